"""Decide io/cache for one disk: first matching rule, then the safety checks."""

from __future__ import annotations

from aiohook.policy.conditions import CONDITIONS
from aiohook.policy.ruleset import Action
from aiohook.policy.safety import CACHE_CHECKS, Candidate, refusals
from aiohook.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aiohook.facts import DiskFacts, HostFacts
    from aiohook.policy.ruleset import Rule, Ruleset

NO_RULE = "(no rule)"
SKIP_RULE = "metadata:skip"
PIN_RULE = "metadata:pin"


class Veto(Record):
    FIELDS = ("check", "io", "cache", "why")

    def __init__(self, check: str, io: str | None, cache: str | None, why: str):
        self.check = check
        self.io = io
        self.cache = cache
        self.why = why


class RuleTrace(Record):
    FIELDS = ("rule", "matched", "why")

    def __init__(self, rule: str, matched: bool, why: str):
        self.rule = rule
        self.matched = matched
        self.why = why  # the failing condition with the fact's value, or what matched


class Decision(Record):
    FIELDS = ("io_before", "io_after", "cache_before", "cache_after", "rule", "reason", "vetoes",
              "trace", "replaced_by")

    def __init__(self, io_before: str | None, io_after: str | None, cache_before: str | None,
                 cache_after: str | None, rule: str, reason: str,
                 vetoes: list[Veto] | None = None, trace: list[RuleTrace] | None = None,
                 replaced_by: str | None = None):
        self.io_before = io_before
        self.io_after = io_after
        self.cache_before = cache_before
        self.cache_after = cache_after
        self.rule = rule
        self.reason = reason
        self.vetoes = [] if vetoes is None else vetoes
        self.trace = [] if trace is None else trace
        self.replaced_by = replaced_by  # rule whose choice replaced a refused explicit io

    @property
    def changed(self) -> bool:
        return self.io_before != self.io_after or self.cache_before != self.cache_after


def decide(facts: DiskFacts, host: HostFacts, ruleset: Ruleset, *, pin: str | None = None,
           skip: bool = False, explain: bool = False) -> Decision:
    trace: list[RuleTrace] = []
    if skip:
        return _unchanged(facts, SKIP_RULE, "domain metadata asks aiohook to leave it alone")
    if pin is not None:
        rule_name, action = PIN_RULE, Action((pin,))
        description = f"domain metadata pins io={pin} for {facts.target}"
    else:
        rule = first_match(ruleset, facts, trace if explain else None)
        if rule is None:
            decision = _unchanged(facts, NO_RULE, "no rule matched: left as found")
            decision.trace = trace
            return decision
        rule_name, action, description = rule.name, rule.action, rule.description
    decision = resolve(facts, host, action, rule_name, description, ruleset)
    decision.trace = trace
    return decision


def first_match(ruleset: Ruleset, facts: DiskFacts, trace: list | None = None) -> Rule | None:
    for rule in ruleset.rules:
        if trace is None:
            if rule.selects(facts):
                return rule
            continue
        matched, why = explain_rule(rule, facts)
        trace.append(RuleTrace(rule.name, matched, why))
        if matched:
            return rule
    return None


def explain_rule(rule: Rule, facts: DiskFacts) -> tuple[bool, str]:
    """Whether the rule selects the disk, and why (the failing condition and fact)."""
    failures = []
    for conj in rule.match:
        failed = next(((k, a) for k, a in conj if not CONDITIONS[k].test(facts, a)), None)
        if failed is None:
            hit = _excluded_by(rule, facts)
            if hit:
                return False, f"excluded: {hit}"
            return True, "matched: " + (_describe(conj, facts) or "no conditions")
        key, arg = failed
        failures.append(f"{key} is {CONDITIONS[key].describe_fact(facts)}, wanted {_arg(arg)}")
    return False, "; or ".join(failures)


def _excluded_by(rule: Rule, facts: DiskFacts) -> str | None:
    for conj in rule.exclude:
        if all(CONDITIONS[k].test(facts, a) for k, a in conj):
            return _describe(conj, facts) or "everything"
    return None


def _describe(conj, facts) -> str:
    return ", ".join(f"{k} is {CONDITIONS[k].describe_fact(facts)}" for k, _ in conj)


def _arg(arg) -> str:
    if isinstance(arg, bool):
        return str(arg).lower()
    return arg[0] if len(arg) == 1 else "one of " + ", ".join(arg)


def resolve(facts: DiskFacts, host: HostFacts, action: Action, rule: str,
            description: str, ruleset: Ruleset | None = None) -> Decision:
    """Apply an action through the safety checks: next preference, then a safe fallback.

    When every preference is refused, the io found is kept if it is safe; an
    explicit io that is not gets what the ruleset gives the disk without one.
    """
    cache, vetoes = judged_cache(facts, host, action)
    for wanted in action.io:
        io = io_value(facts, wanted)
        refused = refusals(Candidate(io, cache), facts, host)
        if not refused:
            return _decision(facts, io, cache, rule, description, vetoes)
        vetoes += [Veto(c.name, io, cache, w) for c, w in refused]
    for kept_cache in (cache, facts.cache):
        if not refusals(Candidate(facts.io, kept_cache), facts, host):
            return _decision(facts, facts.io, kept_cache, rule, description, vetoes)
    return _replaced(facts, host, ruleset, rule, description, vetoes)


def judged_cache(facts: DiskFacts, host: HostFacts, action: Action) -> tuple[str | None, list[Veto]]:
    """The cache each io preference is judged with: the action's, unless a cache
    check refuses it (then the cache found), and the vetoes of that refusal."""
    cache = _cache_after(facts, action)
    if cache != facts.cache:
        refused = refusals(Candidate(facts.io, cache), facts, host, CACHE_CHECKS)
        if refused:
            return facts.cache, [Veto(c.name, facts.io, cache, w) for c, w in refused]
    return cache, []


def _cache_after(facts: DiskFacts, action: Action) -> str | None:
    if action.cache:
        return action.cache
    if action.cache_if_unset and facts.cache is None:
        return action.cache_if_unset
    return facts.cache


def io_value(facts: DiskFacts, wanted: str) -> str | None:
    """The io a preference (a mode, keep or unset) stands for on this disk."""
    if wanted == "keep":
        return facts.io
    if wanted == "unset":
        return None
    return wanted


class Replacement(Record):
    """What a refused explicit io becomes, and why."""

    FIELDS = ("io", "why", "rule", "vetoes")

    def __init__(self, io: str, why: str, rule: str | None = None,
                 vetoes: list[Veto] | None = None):
        self.io = io
        self.why = why
        self.rule = rule
        self.vetoes = [] if vetoes is None else vetoes


def replacement_io(facts: DiskFacts, host: HostFacts, ruleset: Ruleset | None) -> Replacement:
    """The io the ruleset gives this disk when the XML sets none, judged with the cache found.

    The correction changes io only. QEMU's default, threads, is written out when
    that choice is no io attribute, or when it needs another cache.
    """
    default = "threads instead, QEMU's default"
    bare = facts._replace(io=None)
    rule = first_match(ruleset, bare) if ruleset is not None else None
    if rule is None:
        return Replacement("threads", f"{default}: no rule decides this disk when the XML sets no io")
    choice = resolve(bare, host, rule.action, rule.name, rule.description)
    inner = "".join(f"; {v.io or 'unset'} refused: {v.why}" for v in choice.vetoes)
    why = f"what rule '{rule.name}' gives this disk when the XML sets no io ({rule.description}{inner})"
    if choice.io_after is None:
        return Replacement("threads", f"{default}: {why}", rule.name, choice.vetoes)
    refused = refusals(Candidate(choice.io_after, facts.cache), facts, host)
    if refused:
        given = f"rule '{rule.name}' gives this disk {choice.io_after}"
        if choice.cache_after != facts.cache:
            why = (f"{given} with cache {choice.cache_after} when the XML sets no io, "
                   f"and a correction changes io only")
        else:
            why = f"{given} when the XML sets no io, refused here: {refused[0][1]}"
        return Replacement("threads", f"{default}: {why}", rule.name, choice.vetoes)
    return Replacement(choice.io_after, f"{choice.io_after} instead: {why}", rule.name, choice.vetoes)


def _replaced(facts, host, ruleset, rule, description, vetoes) -> Decision:
    new = replacement_io(facts, host, ruleset)
    decision = _decision(facts, new.io, facts.cache, rule, description, vetoes)
    decision.reason += " | " + new.why
    decision.vetoes += new.vetoes
    decision.replaced_by = new.rule
    return decision


def _decision(facts, io, cache, rule, description, vetoes) -> Decision:
    reason = description
    if facts.disk_class == "unknown" and facts.class_reason:
        reason += f" [{facts.class_reason}]"
    if vetoes:
        reason += " | " + "; ".join(f"{v.io or 'unset'} refused: {v.why}" for v in vetoes)
    return Decision(facts.io, io, facts.cache, cache, rule, reason, vetoes)


def _unchanged(facts: DiskFacts, rule: str, reason: str) -> Decision:
    return Decision(facts.io, facts.io, facts.cache, facts.cache, rule, reason)
