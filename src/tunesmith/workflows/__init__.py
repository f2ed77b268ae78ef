"""Workflows that chain training and evaluation (the layer above both ``train`` and ``eval``).

Public API::

    from tunesmith.workflows import demo, remote

    result = demo.run(Path("demo-out"), quick=True)         # tunesmith demo
    result = remote.run(cfg, openai.OpenAI(base_url=url))    # tunesmith train --backend openai
"""

__all__ = ["demo", "remote"]
