"""``ErrorCode`` is the one list of error codes: the code uses it, and docs/api.md names exactly its members."""

import ast
import re
from pathlib import Path

import pytest

from shared.errors import API_CODES, JOB_CODES, ErrorCode, MlqueueError

ROOT = Path(__file__).resolve().parents[2]
API_DOC = (ROOT / "docs" / "api.md").read_text()
CODE = re.compile(r"`([a-z]+(?:_[a-z]+)*)`")


def paragraph(starts: str) -> str:
    start = API_DOC.index(starts)
    return API_DOC[start : API_DOC.index("\n\n", start)]


def test_the_api_doc_error_list_names_exactly_the_api_codes():
    named = set(CODE.findall(paragraph("Errors are always")))
    assert named - API_CODES == set(), "docs/api.md names codes nothing answers with"
    assert API_CODES - named == set(), "codes the HTTP API section of docs/api.md does not name"


def test_the_api_doc_job_error_list_names_exactly_the_job_codes():
    codes = paragraph("A model failure is not an HTTP error").partition("{code, message}`")[2]  # after `failed`
    named = set(CODE.findall(codes))
    assert named == JOB_CODES


def test_codes_are_snake_case_and_unique():
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in ErrorCode)
    assert len({code.value for code in ErrorCode}) == len(ErrorCode)
    assert str(ErrorCode.POISON_JOB) == "poison_job" and f"{ErrorCode.POISON_JOB}" == "poison_job"  # the wire form


def test_every_exception_class_default_is_a_member():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    import shared.model_store  # noqa: F401 - its StoreError, a subclass defined outside shared.errors

    for cls in [MlqueueError, *subclasses(MlqueueError)]:
        assert isinstance(cls.code, ErrorCode), cls


def literal_codes(path: Path, root: Path = ROOT) -> list[str]:
    """``code="..."``, ``code = "..."`` and ``{"code": "..."}`` with a plain string in ``path``."""

    def plain(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.keyword) and node.arg == "code" and plain(node.value):
            found.append(f"{path.relative_to(root)}:{node.value.lineno}")
        elif isinstance(node, ast.Assign | ast.AnnAssign) and plain(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if plain(key) and key.value == "code" and plain(value):
                    found.append(f"{path.relative_to(root)}:{value.lineno}")
    return found


def test_no_module_writes_an_error_code_as_a_plain_string():
    paths = sorted(p for d in ("api", "worker", "shared") for p in (ROOT / d).rglob("*.py"))
    offenders = [line for path in paths for line in literal_codes(path)]
    assert offenders == [], "use shared.errors.ErrorCode:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "snippet",
    [
        'raise Conflict("x", code="job_gone")\n',
        'class E:\n    code = "oops"\n',
        'ERR = {"code": "bad", "message": "m"}\n',
    ],
)
def test_the_check_catches_a_plain_string_code(tmp_path, snippet):
    module = tmp_path / "stray.py"
    module.write_text(f"from shared.errors import ErrorCode\n\nOK = ErrorCode.CONFLICT\n{snippet}")
    assert len(literal_codes(module, tmp_path)) == 1
