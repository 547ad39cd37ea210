"""docs/transports.md runs as written: its Python blocks, in order, in one namespace
(the example transport itself also runs the whole suite as the ``docs-example`` backend)."""

from typing import Any, Dict

from .backends import docs_blocks


def test_the_guide_has_the_blocks_this_test_knows() -> None:
    blocks = docs_blocks()
    assert len(blocks) == 2
    assert "class OneShotTransport" in blocks[0]
    assert 'transport="one-shot"' in blocks[1]


def test_the_guide_runs_as_written() -> None:
    namespace: Dict[str, Any] = {"__name__": "docs_transports"}
    for block in docs_blocks():
        exec(compile(block, "docs/transports.md", "exec"), namespace)
    assert namespace["emu"].stats()["token_requests"] == 1  # the example's token came through it
