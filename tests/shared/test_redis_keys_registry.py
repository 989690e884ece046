"""``shared.redis_keys`` is the only module that builds a Redis key: a grep over the source keeps it so."""

import ast
from pathlib import Path

import pytest

from shared import redis_keys

ROOT = Path(__file__).resolve().parents[2]
# client/ is a separate package that never talks to Redis; tests may spell a key out to check it.
SOURCE_DIRS = ("api", "worker", "shared", "models", "training", "devtools", "bench")
REGISTRY = ROOT / "shared" / "redis_keys.py"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose about keys is fine)."""
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, nodes) and node.body and isinstance(node.body[0], ast.Expr)
    }


def _is_key(value: object) -> bool:
    return isinstance(value, str) and value.startswith(f"{redis_keys.PREFIX}:")


def key_builders(path: Path, root: Path = ROOT) -> list[str]:
    """Lines of ``path`` that use ``PREFIX`` or write a string starting ``mlqueue:``."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "PREFIX":
            found.append(f"{path.relative_to(root)}:{node.lineno} PREFIX")
        elif isinstance(node, ast.alias) and node.name == "PREFIX":
            found.append(f"{path.relative_to(root)}:{node.lineno} imports PREFIX")
        elif isinstance(node, ast.Constant) and _is_key(node.value) and id(node) not in docstrings:
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    return found


def sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py") if p != REGISTRY)


def test_no_module_outside_the_registry_builds_a_prefixed_key():
    offenders = [line for path in sources() for line in key_builders(path)]
    assert offenders == [], "build Redis keys in shared/redis_keys.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "snippet",
    [
        'KEY = f"{PREFIX}:thing:{x}"\n',
        "from shared.redis_keys import PREFIX\n",
        'r.get("mlqueue:job:1")\n',
        'r.get(f"mlqueue:job:{job_id}")\n',
    ],
)
def test_the_check_catches_a_key_built_elsewhere(tmp_path, snippet):
    module = tmp_path / "stray.py"
    module.write_text(f'"""Docs may say mlqueue:job:{{id}}."""\n\n{snippet}')
    assert key_builders(module, tmp_path) != []


def test_the_check_lets_docstrings_and_other_strings_through(tmp_path):
    module = tmp_path / "fine.py"
    module.write_text('"""``mlqueue:job:{id}`` is a hash."""\n\nNAME = "mlqueue-webhooks/1"\nQUEUE = "mlqueue.drain"\n')
    assert key_builders(module, tmp_path) == []


def test_every_key_starts_with_the_prefix_and_families_do_not_collide():
    built = [
        redis_keys.job_key("J"),
        redis_keys.deliveries_key("J"),
        redis_keys.tomb_key("J"),
        redis_keys.model_index("m"),
        redis_keys.owner_index("o"),
        redis_keys.idem_key("k"),
        redis_keys.blob_key("J"),
        redis_keys.in_key("J", 0),
        redis_keys.out_key("J", 0),
        redis_keys.done_key("J"),
        redis_keys.image_key("J", 0),
        *vars(redis_keys.queue_keys("cpu")).values(),
        redis_keys.worker_key("h"),
        redis_keys.cache_entry("m", 1, "d"),
        redis_keys.delivered_key("w"),
        redis_keys.inflight_key("w"),
        redis_keys.stopped_key("J"),
        redis_keys.progress_key("J"),
        redis_keys.rate_limit_key("jobs", "k"),
        redis_keys.EVENTS_CHANNEL,
        redis_keys.INDEX_ALL,
        redis_keys.WORKERS,
        redis_keys.SWEEPER_LEASE,
        redis_keys.CACHE_STATS,
        redis_keys.WEBHOOKS_DELAYED,
    ]
    assert all(key.startswith("mlqueue:") for key in built)
    assert len(set(built)) == len(built)
