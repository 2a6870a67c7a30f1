"""Staged HuBERT iterations and the `hubert` command: the only package that imports both others."""
