"""The HuBERT model, masked-prediction loss, trainer, checkpoints and Hugging Face export/import."""
