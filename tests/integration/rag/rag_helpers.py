"""RAG test helpers (imported by the rag test modules): a small corpus and a counting MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunesmith.rag.embed import Embedder, get_embedder

CORPUS = {
    "guide.md": "# Widget Guide\n\nThe widget is a small home robot.\n\n## Installation\n\nInstall the widget app with "
    "`pip install widget`. It needs Python 3.11 or newer.\n\n## Reset\n\nHold the red button for ten seconds to "
    "reset the widget to factory settings.\n",
    "pricing.html": "<html><head><title>Pricing</title></head><body><h1>Pricing</h1><p>The pro plan costs 42 euros "
    "per month. The free plan has no support.</p></body></html>",
    "geo/freedonia.txt": "Freedonia is a small country. Its capital is Fredville, a city of twelve thousand people "
    "famous for its copper bridges.",
    "faq.jsonl": '{"title": "Refunds", "text": "Refunds are processed within 14 days of the request."}\n'
    '{"title": "Shipping", "text": "Shipping to Europe takes three to five working days."}\n',
    "team.csv": "name,role\nAlice Martin,Chief executive officer\nBob Stone,Head of engineering\n",
    "codes.txt": "Error code XJ-42 means the battery firmware is outdated. Error code QP-7 means the wheel is jammed.",
}


def write_corpus(root: Path, files: dict[str, str] = CORPUS) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


class CountingEmbedder(Embedder):
    """The real MiniLM, counting how many texts it was asked to embed (to prove skipped work)."""

    def __init__(self, fail_after: int | None = None) -> None:
        real = get_embedder("minilm")
        self.__dict__.update(real.__dict__)
        self.calls: list[int] = []
        self.fail_after = fail_after

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and sum(self.calls) + len(texts) > self.fail_after:
            raise KeyboardInterrupt("simulated Ctrl-C in the middle of indexing")
        self.calls.append(len(texts))
        return super().encode(texts)
