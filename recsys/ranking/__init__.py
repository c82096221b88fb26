"""Business rules applied to model scores before anything is shown to a customer."""

from recsys.ranking.rules import (
    CatalogArrays,
    CompiledRules,
    Ranked,
    RequestFilters,
    RuleSet,
    RulesFile,
    apply_rules,
    compile_rules,
    load_rules,
)

__all__ = [
    "CatalogArrays",
    "CompiledRules",
    "Ranked",
    "RequestFilters",
    "RuleSet",
    "RulesFile",
    "apply_rules",
    "compile_rules",
    "load_rules",
]
