"""HTTP serving: app factory, schemas, micro-batcher, error table, metrics, endpoint registry.

Everything heavy (FastAPI, uvicorn, torch) is imported by the submodules that need it, so
``import intentkit.serve`` stays cheap and side-effect free.
"""
