"""Benchmarks stay on this machine: they refuse to start when a host setting given to their
processes (from the environment or `--env`) names anything but loopback."""

import ipaddress
import re
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

SETTING = re.compile(r"(INVENTORY|BILLING|GATEWAY|RABBITMQ)_(\w+_)?(HOST|URLS?)")


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0: listen on, or reach, this host


def require_loopback(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env`, if every host its settings name is loopback; otherwise exit with why."""
    for name, value in env.items():
        if not SETTING.fullmatch(name):
            continue
        urls = [url.strip() for url in value.split(",")] if "://" in value else []
        hosts = [urlsplit(url).hostname or "" for url in urls] if urls else [value.strip()]
        if outside := [host for host in hosts if host and not is_loopback(host)]:
            sys.exit(
                f"bench: {name} names {', '.join(outside)}: benchmarks reach only this machine "
                "(127.0.0.1, ::1, localhost); unset it or give it a loopback value"
            )
    return env
