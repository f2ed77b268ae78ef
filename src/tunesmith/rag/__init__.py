"""Retrieval-augmented generation: index documents, retrieve passages, answer with citations, evaluate.

Public API (stable; used by eval's ``base:rag`` / ``finetuned+rag`` and by ``data convert --with-context``)::

    from tunesmith.rag import open_index, retrieve, build_rag_messages, Passage
    from tunesmith.rag.raft import add_context

    index = open_index("my.index")                       # folder built by `tunesmith rag index`
    passages = retrieve(index, "How do I reset it?", k=5, mode="hybrid")   # or "dense" | "bm25"
    #   -> list[Passage(text, source, score, chunk_id, heading, location)], best first
    messages = build_rag_messages(question, passages, system_prompt=None)
    #   -> [{"role": "system", ...}, {"role": "user", "content": "Passages: [1] ... Question: ..."}]
    rows = add_context(chat_rows, "my.index", k=3, distractors=2, seed=0)   # RAFT training rows

Building / updating: ``tunesmith.rag.index.index_documents(paths, index_dir)`` (incremental, keyed by
content hash). Grounded answers: ``tunesmith.rag.answer.ask(index, question, generator)``; judging an
answer produced elsewhere: ``tunesmith.rag.answer.check_answer(text, passages)``.
Design choices and measured figures: docs/rag.md.
"""

from tunesmith.rag.answer import NOT_IN_DOCUMENTS, build_rag_messages
from tunesmith.rag.retrieve import Index, Passage, open_index, retrieve

__all__ = ["NOT_IN_DOCUMENTS", "Index", "Passage", "build_rag_messages", "open_index", "retrieve"]
