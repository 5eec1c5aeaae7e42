"""Run: generate answers from models (runner.py: local, vLLM and HTTP-API backends; serve.py; the request cache)."""
