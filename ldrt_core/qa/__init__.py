"""QA generation: instruction conversations for each curated figure-caption pair.

`generate_for_dataset(engine, store, version, generator)` with a `TemplateQAGenerator` (no model)
or an `LLMQAGenerator(client)` (any `LLMClient`: OpenAI-compatible HTTP, local transformers).
"""

from ldrt_core.qa.generate import (
    GenerationSummary,
    LLMQAGenerator,
    QAGenerator,
    QAInput,
    QAResult,
    TemplateQAGenerator,
    generate_for_dataset,
)

__all__ = [
    "GenerationSummary",
    "LLMQAGenerator",
    "QAGenerator",
    "QAInput",
    "QAResult",
    "TemplateQAGenerator",
    "generate_for_dataset",
]
