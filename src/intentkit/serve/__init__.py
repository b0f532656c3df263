"""The HTTP server: app factory, schemas, micro-batcher, error table, metrics, run loop.

Endpoint lifecycles (deploy, list, delete) live in :mod:`intentkit.endpoints`. Everything heavy
(FastAPI, uvicorn, torch) is imported by the submodules that need it, so ``import intentkit.serve``
stays cheap and side-effect free.
"""
