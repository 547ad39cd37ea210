"""Every Python block in README.md and docs/*.md runs against the emulator, so the docs stay true.

The blocks run as written, with one edit: the documented production URL points at the emulator.
The environment they see is what the docs say a user sets: AGENT_* / ANTI_AI_URL for an agent
allowed what the examples do (with a capability map and a credential), AGENT_OTP_* for the
approval service (which auto-approves the examples' email.send), and a `token` for blocks that
verify one. Blocks fenced as `py` instead of `python` need a server this test does not start
(the Redis store's block; `tox -e store-redis` runs that code against a real redis-server).
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
AUDIENCE = "https://myservice.example.com"
SCOPES = [
    "db:read",
    "stripe:customer:read",
    "stripe.charges.create",
    "stripe.customers.read",
    "crm.read",
]


def _blocks() -> List[Tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for n, code in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S)):
            found.append((page.relative_to(ROOT).as_posix(), n, code))
    return found


BLOCKS = _blocks()


def test_the_guide_and_the_reference_have_python_examples():
    pages = {page for page, _, _ in BLOCKS}
    assert "README.md" in pages and len(pages) >= 5
    assert BLOCKS[0][2].startswith("from oculus_lite import Client\n\nwith Client() as client:")


def test_the_readme_first_screen_is_two_commands():
    """Before the first ## heading: exactly two commands, in one fenced block."""
    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    fenced = re.findall(r"```(\w*)\n(.*?)```", first_screen, flags=re.S)
    assert len(fenced) == 1
    commands = [line for line in fenced[0][1].splitlines() if line.strip()]
    assert commands == ["python3 -m oculus_lite demo", "python3 tests/run.py"]
    assert "pip install" not in first_screen


def _anchors(page: Path) -> Set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_leads_somewhere():
    """A link from the README or a docs page names a file that exists and, with #, a heading in it."""
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append("{}: {} (no such file)".format(page.name, target))
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append("{}: {} (no such heading)".format(page.name, target))
    assert broken == []


@pytest.fixture
def documented(monkeypatch: Any, emulator: Any, tmp_path: Any) -> Dict[str, Any]:
    emulator.add_agent(
        "docs-agent",
        "docs-secret",
        scopes=SCOPES,
        default_scopes=SCOPES,
        constraints={"max_amount_cents": 5000},
    )
    emulator.add_agent("summariser", "summariser-secret", scopes=["crm.read"])
    emulator.set_capability_map(
        {
            "stripe": {
                "capabilities": {"stripe.charges.create": {}, "stripe.customers.read": {}},
                "deny_always": [],
            }
        }
    )
    emulator.set_credential("stripe", "api_key", "sk_test_docs")
    emulator.otp.add_policy(
        name="docs", priority=1, action="auto_approve", conditions={"action": {"equals": "email.send"}}
    )
    for name, value in (
        ("AGENT_CLIENT_ID", "docs-agent"),
        ("AGENT_CLIENT_SECRET", "docs-secret"),
        ("ANTI_AI_URL", emulator.url),
        ("AGENT_OTP_URL", emulator.url),
        ("AGENT_OTP_API_KEY", emulator.otp.demo_api_key),
        ("XDG_RUNTIME_DIR", str(tmp_path)),
    ):
        monkeypatch.setenv(name, value)
    from oculus_lite import Client

    with Client(revocation_interval=None) as client:
        token = client.get_token("db:read", audience=AUDIENCE)
    return {"emulator": emulator, "token": token}


@pytest.mark.parametrize("page, n, code", BLOCKS, ids=["{}[{}]".format(p, n) for p, n, _ in BLOCKS])
def test_block_runs(documented: Dict[str, Any], page: str, n: int, code: str) -> None:
    emulator = documented["emulator"]
    namespace: Dict[str, Any] = {"token": documented["token"], "__name__": "docs_example"}
    code = code.replace("https://api.antiailabs.com", emulator.url)
    exec(compile(code, "{}[{}]".format(page, n), "exec"), namespace)
    client = namespace.get("client")
    if client is not None and hasattr(client, "closed"):
        assert client.closed or page.endswith("configuration.md")
