"""Billing command line: `python -m billing dlq list|replay`, `python -m billing queues migrate`."""

import argparse
import asyncio
import sys

from aiormq.exceptions import AMQPError

from billing import dlq, queues
from billing.broker import QueueMismatch
from billing.config import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing")
    commands = parser.add_subparsers(dest="group", required=True)
    dead_letters = commands.add_parser("dlq", help="dead-letter queue")
    dead_letters.add_argument("action", choices=["list", "replay"])
    queue_commands = commands.add_parser("queues", help="billing_queue and its dead-letter queue")
    queue_commands.add_argument(
        "action", choices=["migrate"], help="make classic queues quorum queues, keeping messages"
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    try:
        if args.group == "queues":
            for line in asyncio.run(queues.migrate(settings)):
                print(line)
        elif args.action == "list":
            _print_letters(asyncio.run(dlq.browse(settings)), settings.dead_letter_queue)
        else:
            moved = asyncio.run(dlq.replay(settings))
            print(f"replayed {moved} dead letter(s) to {settings.billing_queue}")
    except (queues.MigrationRefused, QueueMismatch) as exc:
        print(f"{args.group} {args.action}: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, AMQPError) as exc:
        print(f"broker unreachable: {exc!r}", file=sys.stderr)
        return 1
    return 0


def _print_letters(letters: list[dlq.DeadLetter], queue: str) -> None:
    for letter in letters:
        body = letter.body.decode("utf-8", "replace")
        print(f"{letter.message_id or '-'}\treason: {letter.reason}\tbody: {body}")
    print(f"{len(letters)} dead letter(s) in {queue}")


if __name__ == "__main__":
    sys.exit(main())
