"""ExecPolicy: the policy model and the loading of policy files."""

from enforcer.policy.fields import Labels
from enforcer.policy.loader import (
    LoadedPolicy,
    LoadResult,
    load_policies,
    load_policies_or_raise,
    load_policy_text,
)
from enforcer.policy.match import Match
from enforcer.policy.model import ExecPolicy, Metadata, Mode, Rule, RuleAction, Spec
from enforcer.policy.problems import PolicyProblem
from enforcer.policy.selectors import ContainerSelector, NamespaceSelector, Selector

__all__ = [
    "ContainerSelector",
    "ExecPolicy",
    "Labels",
    "LoadResult",
    "LoadedPolicy",
    "Match",
    "Metadata",
    "Mode",
    "NamespaceSelector",
    "PolicyProblem",
    "Rule",
    "RuleAction",
    "Selector",
    "Spec",
    "load_policies",
    "load_policies_or_raise",
    "load_policy_text",
]
