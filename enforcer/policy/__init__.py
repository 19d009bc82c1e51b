"""ExecPolicy: the policy model and the loading of policy files."""

from enforcer.policy.loader import (
    LoadedPolicy,
    LoadResult,
    PolicyProblem,
    load_policies,
    load_policies_or_raise,
    load_policy_text,
)
from enforcer.policy.model import (
    ContainerSelector,
    ExecPolicy,
    Labels,
    Match,
    Metadata,
    Mode,
    NamespaceSelector,
    Rule,
    RuleAction,
    Selector,
    Spec,
)

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
