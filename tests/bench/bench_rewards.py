"""Epoch close for 10k, 100k and 1M accounts: chain.rewards.close_epoch against a naive implementation.

The baseline is the spec read line by line (docs/rewards.md): Fraction everywhere, one account at a time,
a sorted list of Fraction excesses and the decimal step for every competitor. Both run in the same
invocation, each size and implementation in its own subprocess so that peak memory does not mix; both
must produce identical results (compared by a digest of every account's output) wherever both ran.
Speed-ups are CPU-time ratios: the machines here are shared, so wall time carries other tenants' load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

from chain.rewards import (
    AccountClose,
    AccountEpoch,
    AccountState,
    RewardParams,
    Snapshot,
    close_epoch,
    decode_document,
    encode_document,
    encode_result,
    format_multiplier,
)
from chain.rewards.simulate import synthetic_epoch

SIZES = (10_000, 100_000, 1_000_000)
# The naive close takes about 1 CPU minute per million accounts here (several wall minutes on a busy
# machine); BENCH_REWARDS_NAIVE_MAX=100000 skips it at 1M.
NAIVE_MAX_SIZE = int(os.environ.get("BENCH_REWARDS_NAIVE_MAX", "1000000"))
SEED = 6
# The exchange documents are ~700 bytes an account; JSON in and out is timed up to this size.
CODEC_MAX_SIZE = 100_000


def naive_close_epoch(accounts: dict[str, AccountEpoch], params: RewardParams) -> dict[str, AccountClose]:
    """docs/rewards.md "Paying an epoch" and "Closing epoch t", written as plainly as possible."""
    n_week = 168 // params.epoch_hours
    floor = params.earnings_floor
    partial: dict[str, dict] = {}
    for account_id, entry in accounts.items():
        state, inp = entry.state, entry.input
        snapshot = entry.snapshot or Snapshot(Fraction(1), floor)
        r = inp.base_reward
        cap = params.boost_cap_bps * snapshot.denominator // (10000 * n_week)
        boostable = min(r, cap)
        reward = r + math.floor((snapshot.multiplier - 1) * boostable)

        lifetime = state.lifetime + r
        history = [*state.history, r][-n_week:]
        closed = state.closed_epochs + 1
        e_obs = n_week * sum(history) // len(history)
        e = state.smoothed
        lam = params.lambda_up_bps if e_obs >= e else params.lambda_down_bps
        e = e + ((e_obs - e) * lam) // 10000
        eligible = (
            inp.registered
            and not inp.suspended
            and closed >= params.min_history_epochs
            and lifetime >= params.min_lifetime
        )
        d = max(e, floor)
        s_bond = inp.active_bond
        w = Fraction(s_bond, d)
        threshold = params.validator_exit_weeks if state.validator else params.validator_enter_weeks
        validator = eligible and s_bond >= params.validator_min_bond and w >= threshold
        c = min(Fraction(1), w / params.full_weeks)
        base = Fraction(params.base_boost_bps, 10000) * c
        excess = max(Fraction(0), w - params.full_weeks)
        partial[account_id] = dict(
            state=AccountState(e, lifetime, tuple(history), closed, validator),
            reward=reward,
            eligible=eligible,
            d=d,
            validator=validator,
            base=base,
            excess=excess,
            e=e,
            comp=Fraction(0),
        )

    competitors = [
        p
        for p in partial.values()
        if p["eligible"] and p["excess"] > 0 and p["e"] >= params.comp_min_account_earnings
    ]
    n = len(competitors)
    if n >= params.comp_min_accounts and sum(p["e"] for p in competitors) >= params.comp_min_total_earnings:
        x = sorted(p["excess"] for p in competitors)
        low = x[0]
        high = x[-(-params.percentile * n // 100) - 1]
        kappa = Fraction(params.tiers_kappa)
        k = min(max(math.isqrt(math.floor(kappa**2 * n)), params.tiers_min), params.tiers_max)
        for p in competitors:
            d_ex = min(p["excess"], high)
            rel = Fraction(0) if high <= low else (d_ex - low) / (high - low)
            absolute = min(Fraction(1), p["excess"] / params.comp_weeks)
            with localcontext(Context(prec=50, rounding=ROUND_HALF_EVEN)):
                rel_d = Decimal(rel.numerator) / Decimal(rel.denominator)
                soft = Decimal(0) if rel_d == 0 else rel_d ** Decimal(params.alpha)
                q = soft * (Decimal(absolute.numerator) / Decimal(absolute.denominator))
                q = min(max(q, Decimal(0)), Decimal(1))
            s = math.floor(Fraction(q) * (k - 1))
            p["comp"] = Fraction(s, k - 1) * Fraction(params.comp_boost_bps, 10000)

    results = {}
    for account_id, p in partial.items():
        if p["eligible"]:
            b = min(Fraction(params.max_multiplier_bps, 10000), 1 + p["base"] + p["comp"])
        else:
            b = Fraction(1)
        snapshot = Snapshot(b, p["d"], p["eligible"], p["validator"])
        results[account_id] = AccountClose(p["state"], snapshot, p["reward"])
    return results


def digest(results: dict[str, AccountClose]) -> str:
    """sha256 over every account's outputs, in ID order (the competitive tier is not a spec output)."""
    h = hashlib.sha256()
    for account_id in sorted(results):
        close = results[account_id]
        state, snapshot = close.state, close.snapshot
        h.update(
            f"{account_id}|{state.smoothed}|{state.lifetime}|{','.join(map(str, state.history))}|"
            f"{state.closed_epochs}|{state.validator}|{format_multiplier(snapshot.multiplier)}|"
            f"{snapshot.denominator}|{snapshot.boost_eligible}|{snapshot.validator_eligible}|{close.reward}\n".encode()
        )
    return h.hexdigest()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure(implementation: str, size: int) -> dict:
    """One measurement, meant to run alone in a fresh process: build inputs, close once, report."""
    params = RewardParams()
    accounts = synthetic_epoch(size, SEED, params)
    rss_before = _rss_bytes()
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    if implementation == "engine":
        result = close_epoch(accounts, params)
        results, competitors = result.accounts, result.competition.size
    else:
        results = naive_close_epoch(accounts, params)
        competitors = None
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    measured = {
        "implementation": implementation,
        "accounts": size,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_us_per_account": round(cpu_seconds / size * 1e6, 2),
        "load_average_at_start": round(load, 2),
        "inputs_rss_mib": round(rss_before / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "close_extra_peak_mib": round((peak - rss_before) / 2**20, 1),
        "competitors": competitors,
        "digest": digest(results),
    }
    if implementation == "engine" and size <= CODEC_MAX_SIZE:
        # What `dolphin rewards close-epoch` adds around the close: JSON in and out (after the peak above).
        document = encode_document(params, accounts)
        cpu_started = time.process_time()
        decode_document(document)
        measured["decode_cpu_seconds"] = round(time.process_time() - cpu_started, 3)
        cpu_started = time.process_time()
        encode_result(result)
        measured["encode_cpu_seconds"] = round(time.process_time() - cpu_started, 3)
        measured["document_mib"] = round(len(document) / 2**20, 1)
    return measured


def _measure_in_subprocess(implementation: str, size: int) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_rewards", implementation, str(size)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return json.loads(completed.stdout)


def run(out_dir: Path) -> dict:
    rows = []
    for size in SIZES:
        engine = _measure_in_subprocess("engine", size)
        print(json.dumps(engine), flush=True)
        row = {"accounts": size, "engine": engine}
        if size <= NAIVE_MAX_SIZE:
            naive = _measure_in_subprocess("naive", size)
            print(json.dumps(naive), flush=True)
            if naive["digest"] != engine["digest"]:
                raise AssertionError(f"engine and naive close differ at {size} accounts")
            row.update(
                naive=naive,
                identical=True,
                speedup_cpu=round(naive["cpu_seconds"] / engine["cpu_seconds"], 2),
                speedup_wall=round(naive["seconds"] / engine["seconds"], 2),
                peak_memory_ratio=round(
                    engine["close_extra_peak_mib"] / max(naive["close_extra_peak_mib"], 0.1), 3
                ),
            )
        rows.append(row)
    _plot(rows, out_dir / "rewards.png")
    return {
        "benchmark": "epoch close (docs/rewards.md): chain.rewards.close_epoch vs a naive Fraction version",
        "sizes": rows,
        "naive_max_size": NAIVE_MAX_SIZE,
        "plot": "rewards.png",
    }


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, marker in (("engine", "o"), ("naive", "s")):
        measured = [row for row in rows if name in row]
        sizes = [row["accounts"] for row in measured]
        time_axis.plot(sizes, [row[name]["cpu_seconds"] for row in measured], marker=marker, label=name)
        peaks = [row[name]["close_extra_peak_mib"] for row in measured]
        memory_axis.plot(sizes, peaks, marker=marker, label=name)
    for axis, label in ((time_axis, "epoch close, CPU s"), (memory_axis, "extra peak RSS during close, MiB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("accounts")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("Reward epoch close: engine vs naive Fraction implementation")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
