"""A stand-in for AWS that behaves like it where moto does not (see :mod:`standin.proxy`)."""

from standin.proxy import Call, Reply, Rule, StandIn

__all__ = ["Call", "Reply", "Rule", "StandIn"]
