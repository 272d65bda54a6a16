"""The checks of one answer, all from what the node itself sent and signed (see docs/verification.md).

- `tokens`: the receipt's prompt count is the reference's count of the validator's prompt; the text is what
  the claimed token ids detokenize to (up to a stop string that ended the answer); re-tokenizing the text
  gives the claimed number of tokens, within `Thresholds.token_count_slack`.
- `fingerprint`: one teacher-forced prefill of the reference over prompt + the node's tokens
  (`Engine.score`) gives each position's logprob, rank and best alternatives. The node's logprobs must match
  within `max_logprob_error`. Greedy answers must choose the reference's best token at every position
  (within `max_choice_gap` of it, for honest near-ties). Sampled answers must stay inside the nucleus
  (`top_p`), must not be too unlikely under the reference (a one-sided z test on their log-likelihood),
  and, with a seed and a node whose sampler the validator can replay, must be the tokens the seed draws.
- `end`: an answer that says it stopped ends on an end-of-sequence token the reference would choose there
  (or on a stop string); one cut at its length has the asked-for length; a greedy answer does not run past
  an end-of-sequence the reference chooses.
- `speed`: time to first token and decode speed within the model's bounds.

And per node, over several answers (`check_benchmark`): the speed its own signed benchmark attestation
claims must be within `attestation_slack` of the fastest of its last `benchmark_answers` timed answers.

Each check gives a `CheckResult`: passed, failed with a strike reason, or not applicable (None). A failure
is *provable* when the evidence alone shows it, so every validator re-running `check_answer` on the
evidence reaches it too; speed measured on the validator's own clock is not (its word only), and raises
the node's suspicion without a strike report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.engines.base import EngineError, ScoredToken
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.messages import BenchmarkAttestation, Receipt
from validator.answers import Answer
from validator.errors import EvidenceError, ReferenceModelError
from validator.reference import Reference

__all__ = [
    "CHECKS",
    "CheckResult",
    "Thresholds",
    "Verdict",
    "benchmark_evidence",
    "check_answer",
    "check_benchmark",
    "timed",
    "verify_benchmark_evidence",
]

CHECKS = ("tokens", "fingerprint", "end", "speed")
SCORE_TOP = 20  # alternatives per position from the reference: the nucleus and likelihood tests use them
_RACE_MARGIN = 1e-3  # relative margin of a replayed draw's winner over the runner-up (float noise is ~1e-5)


@dataclass(frozen=True)
class Thresholds:
    """Where honest ends and cheating starts. These defaults are generic and loose (half-precision serving
    differs more than float32); `calibration.thresholds_for` gives a model's calibrated ones. Speed bounds
    depend on the model and the hardware class, so they are off (0) unless configured."""

    max_logprob_error: float = 0.05
    max_choice_gap: float = 0.05
    token_count_slack: int = 2
    token_count_ratio: float = 0.1
    nucleus_slack: float = 0.02
    min_likelihood_z: float = -6.0
    max_replay_mismatches: int = 0
    min_speed_tokens: int = 16  # answers shorter than this are not timed
    min_decode_tps: float = 0.0
    max_decode_tps: float = 0.0
    max_ttft_ms: int = 0
    attestation_slack: float = 4.0
    benchmark_answers: int = 6  # answers a benchmark check looks at
    benchmark_window_s: int = 3600  # ... started within this many seconds of each other


@dataclass(frozen=True)
class CheckResult:
    """One check of one answer. `passed` None: not applicable to this answer. `measures`: the statistics
    it was decided on (for calibration and benchmarks)."""

    name: str
    passed: bool | None
    reason: str | None = None
    detail: str = ""
    provable: bool = True
    measures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """Every check of one answer."""

    results: tuple[CheckResult, ...]

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.passed is False)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def strike(self) -> CheckResult | None:
        """The first provable failure (tokens, fingerprint, end, speed order): what a strike reports."""
        return next((r for r in self.failures if r.provable), None)

    def result(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def summary(self) -> str:
        return "; ".join(f"{r.name}: {r.detail}" for r in self.failures) or "passed"


def _result(
    name: str, failures: list[tuple[str, str]], measures: dict, *, provable: bool = True
) -> CheckResult:
    if failures:
        reason, detail = failures[0]
        detail = "; ".join(text for _, text in failures)
        return CheckResult(name, False, reason, detail, provable, measures)
    return CheckResult(name, True, None, "ok", provable, measures)


async def check_answer(
    reference: Reference, answer: Answer, thresholds: Thresholds, *, own_clock: bool = False
) -> Verdict:
    """Run every check on `answer`. `own_clock`: also judge speed by the timings this validator observed
    (the sender of the request does; a validator re-checking someone's evidence does not).

    Raises ReferenceModelError when the reference cannot score the answer (engine down, too long for it).
    """
    if answer.request.model != reference.model_id:
        raise ReferenceModelError("the answer is for another model than the reference")
    engine = reference.engine
    turns = _turns(answer)
    try:
        prompt_ids = await engine.tokenize_chat(turns)
        detokenized = await engine.detokenize(answer.token_ids)
        retokenized = await engine.tokenize(detokenized)
        scored = await engine.score(prompt_ids, answer.token_ids, top=SCORE_TOP) if answer.token_ids else []
    except EngineError as exc:
        raise ReferenceModelError(f"the reference cannot check this answer: {exc}") from exc
    return Verdict(
        (
            _check_tokens(reference, answer, prompt_ids, detokenized, retokenized, thresholds),
            _check_fingerprint(reference, answer, scored, thresholds),
            _check_end(reference, answer, prompt_ids, detokenized, scored, thresholds),
            _check_speed(answer, thresholds, own_clock=own_clock),
        )
    )


def _turns(answer: Answer) -> list:
    from node.engines.base import chat_turns

    return list(chat_turns((m.role, m.content) for m in answer.request.messages))


# ---------------------------------------------------------------------------------------------- tokens


_INCOMPLETE = "\ufffd"  # what a decoder shows for the bytes of a character the answer ended inside


def _same_text(detokenized: str, text: str) -> bool:
    """Whether `text` is what the ids detokenize to, up to an unfinished character at the end (vLLM holds
    those bytes back; the transformers engine shows them as U+FFFD)."""
    return detokenized.rstrip(_INCOMPLETE) == text.rstrip(_INCOMPLETE)


def _stop_tail(detokenized: str, text: str, stops: Sequence[str]) -> str | None:
    """The stop string that ended the answer right after `text`, or None."""
    if not detokenized.startswith(text):
        return None
    rest = detokenized[len(text) :]
    return next((stop for stop in stops if rest.startswith(stop)), None)


def _check_tokens(
    reference: Reference,
    answer: Answer,
    prompt_ids: list[int],
    detokenized: str,
    retokenized: list[int],
    thresholds: Thresholds,
) -> CheckResult:
    failures: list[tuple[str, str]] = []
    if answer.receipt.tokens_in != len(prompt_ids):
        failures.append(
            (
                "bad_receipt",
                f"receipt counts {answer.receipt.tokens_in} prompt tokens, the prompt has {len(prompt_ids)}",
            )
        )
    text = answer.text
    if not _same_text(detokenized, text) and _stop_tail(detokenized, text, answer.request.stop) is None:
        failures.append(("tokenizer_mismatch", "the text is not what the token ids detokenize to"))
    counted = [t for t in answer.token_ids if t not in reference.eos_ids]
    difference = abs(len(retokenized) - len(counted))
    allowed = thresholds.token_count_slack + thresholds.token_count_ratio * len(counted)
    if difference > allowed:
        failures.append(
            (
                "tokenizer_mismatch",
                f"the text re-tokenizes to {len(retokenized)} tokens, the node sent {len(counted)}",
            )
        )
    return _result("tokens", failures, {"token_count_difference": float(difference)})


# ---------------------------------------------------------------------------------------------- fingerprint


def _check_fingerprint(
    reference: Reference, answer: Answer, scored: list[ScoredToken], thresholds: Thresholds
) -> CheckResult:
    if not scored:
        return CheckResult("fingerprint", None, detail="no tokens to score")
    failures: list[tuple[str, str]] = []
    measures: dict[str, float] = {}
    logprobs = answer.logprobs
    if logprobs is None:
        failures.append(("fabricated_output", "the node did not send a logprob for every token"))
    else:
        error = max(abs(node - ref.logprob) for node, ref in zip(logprobs, scored, strict=True))
        measures["logprob_error"] = error
        if error > thresholds.max_logprob_error:
            failures.append(("wrong_model", f"logprobs differ from the reference's by up to {error:.3g}"))
    request = answer.request
    temperature = request.temperature_milli / 1000
    if temperature == 0:
        gap = max(_gap(position) for position in scored)
        measures["choice_gap"] = gap
        if gap > thresholds.max_choice_gap:
            failures.append(("fabricated_output", f"a greedy token is {gap:.3g} below the reference's best"))
    else:
        top_p = request.top_p_milli / 1000
        violations = sum(_outside_nucleus(p, temperature, top_p, thresholds.nucleus_slack) for p in scored)
        measures["nucleus_violations"] = float(violations)
        if violations:
            failures.append(("fabricated_output", f"{violations} sampled tokens lie outside the nucleus"))
        z = _likelihood_z(scored, temperature)
        measures["likelihood_z"] = z
        if z < thresholds.min_likelihood_z:
            failures.append(("fabricated_output", f"the sampled tokens are too unlikely (z = {z:.2f})"))
        if request.seed is not None and _replayable(reference, answer):
            assert reference.replay is not None
            checked, mismatches = _replay(reference, answer, scored, temperature, top_p)
            measures["replay_checked"] = float(checked)
            measures["replay_mismatches"] = float(mismatches)
            if mismatches > thresholds.max_replay_mismatches:
                failures.append(
                    ("fabricated_output", f"{mismatches} of {checked} tokens are not what the seed draws")
                )
    return _result("fingerprint", failures, measures)


def _gap(position: ScoredToken) -> float:
    """How far below the reference's best token the chosen one is (0 when it is the best)."""
    best = position.top[0][1] if position.top else position.logprob
    return max(0.0, best - position.logprob)


def _tempered(position: ScoredToken, temperature: float) -> tuple[list[float], float, float]:
    """Weights exp(lp / T) of the best alternatives, their sum S, and an upper bound U of the rest's sum
    (the rest's mass at T = 1 is R = 1 - sum of the alternatives' probabilities, each at most the last
    alternative's p_K: for T <= 1 the rest at T sums to at most R * p_K^(1/T - 1))."""
    weights = [math.exp(lp / temperature) for _, lp in position.top]
    total = sum(weights)
    rest = max(0.0, 1.0 - sum(math.exp(lp) for _, lp in position.top))
    last = math.exp(position.top[-1][1]) if position.top else 1.0
    if temperature <= 1:
        upper = rest * last ** (1 / temperature - 1)
    else:
        # Hölder's inequality over at most 2^20 remaining tokens (validators sample at T <= 1 anyway).
        upper = rest ** (1 / temperature) * (1 << 20) ** (1 - 1 / temperature)
    return weights, total, upper


def _outside_nucleus(position: ScoredToken, temperature: float, top_p: float, slack: float) -> bool:
    """Whether the chosen token is certainly outside the top-p nucleus at `temperature`: the tokens more
    likely than it hold more than top_p (+ slack) of the mass, even with the largest possible rest."""
    if top_p >= 1 or not position.top:
        return False
    weights, total, upper = _tempered(position, temperature)
    above = sum(weights[: position.rank - 1]) if position.rank <= len(weights) else total
    return above / (total + upper) > top_p + slack


def _likelihood_z(scored: list[ScoredToken], temperature: float) -> float:
    """How many standard deviations the answer's log-likelihood under the reference (at `temperature`)
    lies from what honest sampling gives, over categories: each best alternative, and the rest as one."""
    observed = expected = variance = 0.0
    for position in scored:
        if not position.top:
            continue
        weights, total, upper = _tempered(position, temperature)
        z_t = total + upper / 2
        probabilities = [w / z_t for w in weights]
        rest = max(1e-12, 1 - sum(probabilities))
        categories = [*probabilities, rest]
        logs = [math.log(max(p, 1e-300)) for p in categories]
        mean = sum(p * lg for p, lg in zip(categories, logs, strict=True))
        variance += sum(p * lg * lg for p, lg in zip(categories, logs, strict=True)) - mean * mean
        expected += mean
        chosen = position.rank - 1 if position.rank <= len(weights) else len(weights)
        observed += logs[chosen]
    return (observed - expected) / math.sqrt(variance) if variance > 0 else 0.0


def _replayable(reference: Reference, answer: Answer) -> bool:
    """Whether the validator can replay this node's seeded sampler: the node attests the transformers
    engine on the same kind of device as the reference's generator."""
    attestation = answer.attestation
    return (
        reference.replay is not None
        and attestation is not None
        and attestation.engine == "transformers"
        and attestation.hardware.backend == reference.replay.backend
    )


def _replay(
    reference: Reference, answer: Answer, scored: list[ScoredToken], temperature: float, top_p: float
) -> tuple[int, int]:
    """(positions decided, positions whose drawn token is not the node's) of a seeded answer.

    At each position the exponential race argmax(w_j / q_j) is decided among the best alternatives kept by
    the nucleus; a token outside them can win only if its bound w_K / min(q outside) comes close, and a
    position whose nucleus edge or winner is within float noise is left undecided.
    """
    assert reference.replay is not None and answer.request.seed is not None
    races = reference.replay.races(answer.request.seed, [[token for token, _ in p.top] for p in scored])
    checked = mismatches = 0
    for position, (q, least_other_q) in zip(scored, races, strict=True):
        weights, total, upper = _tempered(position, temperature)
        kept = _kept(weights, total, upper, top_p)
        if None in kept:
            continue
        ids = [token for token, _ in position.top]
        race = sorted(
            ((weights[i] / max(q[i], 1e-30), ids[i]) for i in range(len(ids)) if kept[i]), reverse=True
        )
        if not race:
            continue
        if kept[-1]:  # the nucleus may reach past the alternatives: a token outside them could win
            bound = weights[-1] / max(least_other_q, 1e-30)
            if bound * (1 + _RACE_MARGIN) >= race[0][0]:
                continue
        if len(race) > 1 and race[1][0] * (1 + _RACE_MARGIN) >= race[0][0]:
            continue
        checked += 1
        mismatches += race[0][1] != position.token_id
    return checked, mismatches


def _kept(weights: list[float], total: float, upper: float, top_p: float) -> list[bool | None]:
    """Whether the sampler's nucleus keeps each alternative (None: too close to the edge to tell). It keeps
    a token when the tokens before it hold at most top_p of the mass (the first always)."""
    if top_p >= 1:
        return [True] * len(weights)
    kept: list[bool | None] = []
    before = 0.0
    for weight in weights:
        if before / total <= top_p * (1 - _RACE_MARGIN):
            kept.append(True)  # kept even if the rest held nothing
        elif before / (total + upper) > top_p * (1 + _RACE_MARGIN):
            kept.append(False)  # left out even with the largest rest
        else:
            kept.append(None)
        before += weight
    return kept


# ---------------------------------------------------------------------------------------------- end


def _check_end(
    reference: Reference,
    answer: Answer,
    prompt_ids: list[int],
    detokenized: str,
    scored: list[ScoredToken],
    thresholds: Thresholds,
) -> CheckResult:
    failures: list[tuple[str, str]] = []
    ids = answer.token_ids
    greedy = answer.request.temperature_milli == 0
    measures: dict[str, float] = {}
    if answer.finish_reason == "stop":
        if ids and ids[-1] in reference.eos_ids:
            if greedy:
                measures["eos_gap"] = _gap(scored[-1])
            if greedy and measures["eos_gap"] > thresholds.max_choice_gap:
                failures.append(
                    ("fabricated_output", "the answer ends on an end-of-sequence the model would not choose")
                )
        elif _stop_tail(detokenized, answer.text, answer.request.stop) is None:
            failures.append(
                ("fabricated_output", "the answer says it stopped, without an end-of-sequence or stop string")
            )
    elif answer.finish_reason == "length":
        asked = answer.request.max_tokens
        if len(ids) < asked and len(prompt_ids) + len(ids) < reference.max_model_len:
            failures.append(("fabricated_output", f"cut at {len(ids)} of the {asked} tokens asked for"))
    if greedy:
        skipped = [
            i
            for i, position in enumerate(scored)
            if position.top
            and position.top[0][0] in reference.eos_ids
            and position.token_id not in reference.eos_ids
            and _gap(position) > thresholds.max_choice_gap
        ]
        if skipped:
            failures.append(("fabricated_output", f"runs past the end of sequence at token {skipped[0]}"))
    return _result("end", failures, measures)


# ---------------------------------------------------------------------------------------------- speed


def _decode_tps(receipt: Receipt) -> float:
    """Tokens per second after the first, by the node's own signed account of an answer."""
    return (receipt.tokens_out - 1) * 1000 / max(receipt.duration_ms - receipt.first_token_ms, 1)


def timed(answer: Answer, thresholds: Thresholds) -> bool:
    """Whether the answer is long enough for its speed to mean something."""
    return answer.receipt.tokens_out >= max(2, thresholds.min_speed_tokens)


def _check_speed(answer: Answer, thresholds: Thresholds, *, own_clock: bool) -> CheckResult:
    if not timed(answer, thresholds):
        return CheckResult("speed", None, detail="too short to time")
    receipt = answer.receipt
    failures: list[tuple[str, str]] = []
    measures: dict[str, float] = {}
    timings = [("signed", receipt.first_token_ms, _decode_tps(receipt))]
    if own_clock:
        evidence = answer.evidence
        observed_decode_ms = max(evidence.observed_duration_ms - evidence.observed_first_token_ms, 1)
        observed = (receipt.tokens_out - 1) * 1000 / observed_decode_ms
        timings.append(("observed", evidence.observed_first_token_ms, observed))
    provable = True
    for source, ttft_ms, tps in timings:
        measures[f"{source}_decode_tps"] = tps
        measures[f"{source}_ttft_ms"] = float(ttft_ms)
        found: list[tuple[str, str]] = []
        if thresholds.max_ttft_ms and ttft_ms > thresholds.max_ttft_ms:
            found.append(("too_slow", f"{source} time to first token {ttft_ms} ms"))
        if thresholds.min_decode_tps and tps < thresholds.min_decode_tps:
            found.append(("too_slow", f"{source} decode speed {tps:.1f} tokens/s"))
        if thresholds.max_decode_tps and tps > thresholds.max_decode_tps:
            found.append(("too_fast", f"{source} decode speed {tps:.1f} tokens/s"))
        if found and not failures:
            provable = source == "signed"
        failures += found
    return _result("speed", failures, measures, provable=provable)


# ---------------------------------------------------------------------------------------------- benchmark


def check_benchmark(
    attestation: BenchmarkAttestation, receipts: Sequence[Receipt], thresholds: Thresholds
) -> CheckResult:
    """Whether a node delivers the speed its own signed benchmark attestation claims, judged on several of
    its answers (`receipts`, each its signed account of a timed answer): it fails when even the fastest of
    them is more than `attestation_slack` times slower per stream than the attestation says. One answer
    alone says little (a node is slower under load than when it benchmarked itself); the fastest of
    several, all slower by that much, is a claim the node cannot have met."""
    claimed = attestation.decode_tps_milli / 1000 / max(1, attestation.concurrency)
    fastest = max((_decode_tps(r) for r in receipts), default=0.0)
    measures = {"claimed_tps": claimed, "fastest_tps": fastest, "answers": float(len(receipts))}
    if len(receipts) < thresholds.benchmark_answers or claimed <= fastest * thresholds.attestation_slack:
        return CheckResult(
            "benchmark", len(receipts) >= thresholds.benchmark_answers or None, measures=measures
        )
    detail = (
        f"the fastest of its {len(receipts)} answers: {fastest:.1f} tokens/s; its benchmark: {claimed:.1f}"
    )
    return CheckResult("benchmark", False, "false_benchmark", detail, True, measures)


def benchmark_evidence(answers: Sequence[Answer]) -> tuple[bytes, ...]:
    """The evidence of a benchmark check: the attestation envelope, then each answer's receipt envelope."""
    attestation = answers[-1].evidence.attestation
    assert attestation is not None
    return (attestation, *(answer.evidence.receipt for answer in answers))


def verify_benchmark_evidence(
    evidence: Sequence[bytes], node_key: bytes, model: bytes, thresholds: Thresholds
) -> tuple[BenchmarkAttestation, list[Receipt]]:
    """The attestation and receipts of benchmark evidence, checked: all signed by `node_key` for `model`,
    the receipts distinct, timed, and started within `benchmark_window_s` of each other (so nobody can
    gather a node's slowest answers over weeks). Raises EvidenceError."""
    try:
        signed = envelope.open_signed(evidence[0], BenchmarkAttestation, check_time=False)
        receipts = [envelope.open_signed(item, Receipt, check_time=False) for item in evidence[1:]]
    except (ProtocolError, IndexError) as exc:
        raise EvidenceError(f"the benchmark evidence does not decode or verify: {exc}") from exc
    attestation = signed.message
    if signed.signer != node_key or attestation.node_key != node_key or attestation.model != model:
        raise EvidenceError("the attestation is not the node's own, for this model")
    if any(r.signer != node_key or r.message.model != model for r in receipts):
        raise EvidenceError("a receipt is not the node's, for this model")
    if len({r.message.request_hash for r in receipts}) != len(receipts):
        raise EvidenceError("the same answer counted twice")
    if any(r.message.tokens_out < max(2, thresholds.min_speed_tokens) for r in receipts):
        raise EvidenceError("an answer too short to time")
    starts = [r.message.started_at_ms for r in receipts]
    if starts and max(starts) - min(starts) > thresholds.benchmark_window_s * 1000:
        raise EvidenceError("the answers are spread over more than the benchmark window")
    return attestation, [r.message for r in receipts]
