"""Fine-tuning LLaVA on figure-caption data: the model, its processor and what to train."""
