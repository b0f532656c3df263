"""Packaging trained artifacts for deployment: SageMaker's ``model.tar.gz`` in two layouts."""

from __future__ import annotations

from intentkit.packaging.pack import FORMATS, is_hf_image, pack_model

__all__ = ["FORMATS", "is_hf_image", "pack_model"]
