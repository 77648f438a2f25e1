"""Mutation testing of the modules whose logic the tests must pin down (`make mutation`).

Each mutant is one small change of the module's syntax tree (a comparison, an operator, a number,
a condition, a statement dropped). It is written into a copy of its package in a temporary
directory put first on PYTHONPATH, so the tests (and any server they start as a subprocess) import
the mutant while the working tree stays untouched: other people can keep working in it. A mutant
is killed when its module's tests fail (or time out), and survives when they pass.

    .venv/bin/python bench/mutation.py [MODULE ...] [--list]

Before the mutants, two control runs: the unchanged copy must pass, and a copy that raises on
import must fail (else the tests would not be importing the copy). Everything runs under `nice`;
a module whose tests use PostgreSQL, RabbitMQ or ports holds the shared test lock
(/tmp/crud-test.lock) for its whole run, kept short by a scoped test selection (its own unit or
repository tests). String literals (SQL, messages) and annotations are not mutated. EQUIVALENT
lists the mutants no test can kill because they change nothing observable, read off the code;
the score leaves them out.
"""

import argparse
import ast
import contextlib
import copy
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = Path("/tmp/crud-test.lock")
PYTHON = Path(sys.executable)  # the workspace's .venv python
SOURCES = (
    "libs/crud_common/src",
    *(f"services/{name}/src" for name in ("billing", "gateway", "inventory")),
)


@dataclass(frozen=True)
class Module:
    package: str  # the package directory copied, relative to ROOT
    file: str  # the mutated file, relative to the package
    unit: tuple[str, ...]  # pure unit tests: no shared service, run without the test lock
    shared: tuple[str, ...] = ()  # tests using PostgreSQL, RabbitMQ or ports: under the lock


MODULES = {
    "gateway.guard": Module(
        "services/gateway/src/gateway",
        "guard.py",
        unit=("services/gateway/tests/test_gateway_guard.py",),
        shared=(
            "services/gateway/tests/test_gateway_rate_limit.py",
            "services/gateway/tests/test_gateway_protection.py",
        ),
    ),
    "crud_common.orders": Module(  # the order syntax, applied by the gateway and billing
        "libs/crud_common/src/crud_common",
        "orders.py",
        unit=(
            "services/billing/tests/test_billing_schemas.py",
            "services/billing/tests/test_billing_order_bounds.py",
        ),
    ),
    "billing.schemas": Module(
        "services/billing/src/billing",
        "schemas.py",
        unit=("services/billing/tests/test_billing_schemas.py",),
    ),
    "billing.repository": Module(
        "services/billing/src/billing",
        "repository.py",
        unit=(),
        shared=("services/billing/tests/test_billing_repository.py",),
    ),
    "inventory.repository": Module(
        "services/inventory/src/inventory",
        "repository.py",
        unit=(),
        shared=(
            "services/inventory/tests/test_inventory_repository.py",
            "services/inventory/tests/test_inventory_repository_totals.py",
        ),
    ),
}

# Mutants that change nothing a caller can observe, as (module, line, column, mutation): why.
# Lines and columns are the module's as committed; `--list` prints them.
_FAST_PATH = "the queue's fast path only hands the message to the model, which gives the same"
_RAISING = "raised for a value < 0 or >= 10^10 only: `< 0`, `<= 0` and `< 1` tell them apart alike"
EQUIVALENT: dict[tuple[str, int, int, str], str] = {
    ("crud_common.orders", 43, 94, "1 -> 2"): "MAX_COUNT + 2 is refused as out of range as + 1",
    ("crud_common.orders", 57, 42, "Lt -> LtE"): _RAISING,
    ("crud_common.orders", 57, 50, "0 -> 1"): _RAISING,
    ("crud_common.orders", 70, 38, "Lt -> LtE"): _RAISING,
    ("crud_common.orders", 70, 47, "0 -> 1"): _RAISING,
    ("billing.schemas", 84, 16, "Is -> IsNot"): _FAST_PATH,
    ("billing.schemas", 88, 8, "return None"): _FAST_PATH,
    ("billing.repository", 36, 71, "True -> False"): "an order is always 4 fields: zip is even",
    ("billing.repository", 38, 34, "1 -> 2"): "the last word of 'INSERT 0 N' either way",
    ("billing.repository", 38, 37, "drop USub"): "the last word of 'INSERT 0 N' either way",
    # One row more read or counted changes no answer: `more` and `counted <= count_limit` decide.
    ("inventory.repository", 97, 41, "1 -> 2"): "limit + 2 rows: one more read, same page",
    ("inventory.repository", 97, 66, "1 -> 2"): "counted up to count_limit + 2: same decision",
    ("inventory.repository", 101, 72, "1 -> 2"): "counted up to count_limit + 2: same decision",
    ("inventory.repository", 110, 73, "1 -> 2"): "counted up to count_limit + 2: same decision",
    ("inventory.repository", 116, 74, "1 -> 2"): "counted up to count_limit + 2: same decision",
    ("inventory.repository", 120, 57, "1 -> 2"): "limit + 2 rows: one more read, same page",
}


# --- mutants -----------------------------------------------------------------------------------
SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE,),
    ast.LtE: (ast.Lt,),
    ast.Gt: (ast.GtE,),
    ast.GtE: (ast.Gt,),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult,),
    ast.FloorDiv: (ast.Div,),
    ast.Mod: (ast.FloorDiv,),
    ast.Pow: (ast.Mult,),
    ast.BitOr: (ast.BitAnd,),
    ast.BitAnd: (ast.BitOr,),
    ast.And: (ast.Or,),
    ast.Or: (ast.And,),
}
CALL_SWAPS = {"min": "max", "max": "min"}

# A mutation: its description and a function of the node returning what replaces it.
Mutation = tuple[str, Callable[[ast.AST], ast.AST]]


def _set(field: str, value: object) -> Callable[[ast.AST], ast.AST]:
    def change(node: ast.AST) -> ast.AST:
        setattr(node, field, value)
        return node

    return change


def _set_op(index: int, op: type) -> Callable[[ast.AST], ast.AST]:
    def change(node: ast.AST) -> ast.AST:
        node.ops[index] = op()  # type: ignore[attr-defined]
        return node

    return change


def _negate_test(node: ast.AST) -> ast.AST:
    node.test = ast.UnaryOp(ast.Not(), node.test)  # type: ignore[attr-defined]
    return node


def _mutations(node: ast.AST, parent: ast.AST | None) -> Iterator[Mutation]:
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for other in SWAPS.get(type(op), ()):
                yield f"{type(op).__name__} -> {other.__name__}", _set_op(index, other)
    elif isinstance(node, ast.BinOp | ast.AugAssign | ast.BoolOp):
        for other in SWAPS.get(type(node.op), ()):
            yield f"{type(node.op).__name__} -> {other.__name__}", _set("op", other())
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield f"drop {type(node.op).__name__}", lambda n: n.operand
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        yield f"{node.value!r} -> {node.value + 1!r}", _set("value", node.value + 1)
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        yield f"{node.value} -> {not node.value}", _set("value", not node.value)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        other = CALL_SWAPS.get(node.func.id)
        if other:
            yield f"{node.func.id} -> {other}", _set("func", ast.Name(other, ast.Load()))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield "return None", _set("value", None)
    elif isinstance(node, ast.Break):
        yield "break -> continue", lambda n: ast.copy_location(ast.Continue(), n)
    if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert) and not isinstance(
        node.test, ast.Compare | ast.BoolOp | ast.UnaryOp
    ):
        yield "negate condition", _negate_test
    if isinstance(node, ast.Delete | ast.Raise) or (
        isinstance(node, ast.Expr) and not _is_docstring(node, parent)
    ):
        yield "drop statement", lambda n: ast.copy_location(ast.Pass(), n)


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and isinstance(parent, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, ast.AST | None]]:
    """Every node with its parent, in a fixed order, skipping annotations."""
    stack: list[tuple[ast.AST, ast.AST | None]] = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        children = []
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns", "type_params"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    children.append((child, node))
        stack.extend(reversed(children))


@dataclass(frozen=True)
class Mutant:
    number: int
    line: int
    col: int
    description: str
    source: str


def mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    lines = source.splitlines()
    points = [  # (index of the node in _walk's order, mutation)
        (index, description)
        for index, (node, parent) in enumerate(_walk(tree))
        for description, _ in _mutations(node, parent)
    ]
    result = []
    for number, (index, description) in enumerate(points, 1):
        mutated = copy.deepcopy(tree)
        node, parent = next(item for i, item in enumerate(_walk(mutated)) if i == index)
        line, col = node.lineno, node.col_offset  # type: ignore[attr-defined]
        change = next(c for d, c in _mutations(node, parent) if d == description)
        replacement = change(node)
        if replacement is not node:
            _replace(parent, node, replacement)
        text = ast.unparse(ast.fix_missing_locations(mutated))
        where = f"{description}: {lines[line - 1].strip()}"
        result.append(Mutant(number, line, col, where, text))
    return result


def _replace(parent: ast.AST | None, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise AssertionError("node not found in its parent")


# --- runs --------------------------------------------------------------------------------------
def run_tests(
    module: Module, selection: list[str], source: str, timeout: float
) -> tuple[bool, float]:
    """(passed, seconds) of the `selection` of tests importing `source` as the module."""
    package = ROOT / module.package
    service = package.parents[1]  # services/<name>: alembic.ini, migrations/ beside src/
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        # The same layout: code finding files from its own path (migrations) finds them.
        mirror = Path(tmp) / service.relative_to(ROOT)
        (mirror / "src").mkdir(parents=True)
        for entry in service.iterdir():
            if entry.name != "src":
                (mirror / entry.name).symlink_to(entry)
        copied = mirror / "src" / package.name
        shutil.copytree(package, copied, ignore=shutil.ignore_patterns("__pycache__"))
        (copied / module.file).write_text(source)
        env = {
            **os.environ,
            # The mutant first; the checkout's other packages next, whatever .venv points to.
            "PYTHONPATH": os.pathsep.join([str(mirror / "src"), *(str(ROOT / s) for s in SOURCES)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # halves pytest's start (schemathesis...)
        }
        plugins = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "no:cacheprovider"]
        command = [str(PYTHON), "-m", "pytest", "-x", "-q", *plugins]
        started = time.monotonic()
        process = subprocess.Popen(
            [*command, *selection],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            passed = process.wait(timeout) == 0
        except subprocess.TimeoutExpired:  # a mutant that hangs is killed
            _stop(process)
            passed = False
        return passed, time.monotonic() - started


@contextlib.contextmanager
def test_lock() -> Iterator[None]:
    """The shared test lock, held once for all the shared runs of a module (waiting for it once
    per mutant would queue behind every other test run)."""
    with LOCK.open("a") as lock:
        print(f"  waiting for {LOCK}", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def existing(tests: tuple[str, ...]) -> list[str]:
    return [test for test in tests if (ROOT / test.split("::")[0]).exists()]


def _stop(process: subprocess.Popen) -> None:
    """SIGINT first, so pytest's fixtures stop the servers they started; then SIGKILL."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def mutate(name: str, module: Module, listing: bool, only: set[int]) -> tuple[int, int, int]:
    source = (ROOT / module.package / module.file).read_text()
    candidates = mutants(source)
    if listing:
        for mutant in candidates:
            print(f"{name} #{mutant.number} at {mutant.line}:{mutant.col} {mutant.description}")
        return 0, 0, 0
    unit, shared = existing(module.unit), existing(module.shared)
    print(f"{name}: {len(candidates)} mutants; tests: {' '.join(unit + shared)}", flush=True)
    chosen = [m for m in candidates if not only or m.number in only]
    passed: dict[int, bool] = {}  # mutant number -> the tests passed on it
    if unit:  # first the unit tests, without the lock; the survivors go on to the shared tests
        passed = _phase(name, module, unit, source, chosen)
    if shared:
        with test_lock():
            survivors = [m for m in chosen if passed.get(m.number, True)]
            passed |= _phase(name, module, shared, source, survivors)
    killed = survived = equivalent = 0
    for mutant in chosen:
        change = mutant.description.split(": ", 1)[0]
        reason = EQUIVALENT.get((name, mutant.line, mutant.col, change))
        if passed[mutant.number] and reason:
            equivalent += 1
            status = f"equivalent ({reason})"
        elif passed[mutant.number]:
            survived += 1
            status = "SURVIVED"
        else:
            killed += 1
            status = "killed" + (" (listed as equivalent)" if reason else "")
        print(f"  #{mutant.number} at {mutant.line}:{mutant.col} {mutant.description}: {status}")
    return killed, survived, equivalent


class ControlFailed(Exception):
    """A control run went wrong: the module's mutants would say nothing."""


def _phase(
    name: str, module: Module, selection: list[str], source: str, chosen: list[Mutant]
) -> dict[int, bool]:
    """Run `selection` on each mutant; first check it passes unchanged and sees the copy."""
    passed, baseline = run_tests(module, selection, source, timeout=600)
    if not passed:
        raise ControlFailed(f"{name}: {selection} fail on the unchanged module")
    broken, _ = run_tests(module, selection, source + "\nraise RuntimeError('mutant')\n", 600)
    if broken:
        raise ControlFailed(f"{name}: {selection} pass on a module raising on import")
    print(f"  {' '.join(selection)}: {baseline:.1f} s unchanged", flush=True)
    results = {}
    for mutant in chosen:
        results[mutant.number], seconds = run_tests(
            module, selection, mutant.source, 3 * baseline + 30
        )
        outcome = "passed" if results[mutant.number] else "failed"
        print(f"    #{mutant.number}: tests {outcome} ({seconds:.0f} s)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], default=[])
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--only", default="", help="comma-separated mutant numbers to run")
    args = parser.parse_args()
    os.nice(10)  # the machine is shared: mutants run behind everyone else
    rows = []
    for name in args.modules or MODULES:
        started = time.monotonic()
        only = {int(n) for n in args.only.split(",") if n}
        try:
            killed, survived, equivalent = mutate(name, MODULES[name], args.list, only)
        except ControlFailed as exc:
            print(f"  not measured: {exc}", flush=True)
            continue
        rows.append((name, killed, survived, equivalent, time.monotonic() - started))
    if args.list:
        return
    print(f"\n{'module':<22} {'killed':>6} {'survived':>8} {'equivalent':>10} {'score':>6}  time")
    for name, killed, survived, equivalent, seconds in rows:
        score = killed / (killed + survived) if killed + survived else 1.0
        print(
            f"{name:<22} {killed:>6} {survived:>8} {equivalent:>10} {score:>6.0%}  {seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
