// The validator's dashboard: draws GET /status (validator/status.py) every second.
"use strict";

(() => {
  const { el, fill, text, number, units, ago, badge, table, pairs, historyCharts, poll } = Dash;
  const POD = 18;
  const USD = 6;
  const charts = historyCharts({
    challenges: { key: "challenges_per_s", unit: "/s" },
    failed: { key: "failed_per_s", color: "#c0392b", unit: "/s" },
    "in-flight": { key: "in_flight", color: "#b7791f", unit: "" },
  });
  const STANDING = { good: "ok", suspect: "warn", excluded: "bad", banned: "bad" };

  function short(hex) {
    return hex.length > 18 ? hex.slice(0, 10) + "…" + hex.slice(-6) : hex;
  }

  function render(s) {
    text("peer-id", s.peer_id);
    const draining = s.health.status === "draining";
    const state = draining ? badge("draining", "warn") : s.in_validator_set ? badge("validating", "ok") : badge("not in the set", "warn");
    fill("state").replaceWith(Object.assign(state, { id: "state" }));
    const chain = s.chain;
    let chainState = badge("no chain", "off");
    if (chain.configured) chainState = chain.reachable ? badge("reachable", "ok") : badge("unreachable", "bad");
    fill(
      "status",
      pairs([
        ["wallet", el("code", {}, s.validator)],
        ["model", el("span", { title: s.model.id }, s.model.name)],
        ["epoch", s.epoch],
        ["validator set", number(s.counters.validator_set, 0) + " members"],
        ["nodes in the pool", s.health.nodes],
        ["chain", el("span", {}, chainState, " ", chain.url || "", chain.error ? el("div", { class: "muted" }, chain.error) : null)],
      ]),
    );
    const v = chain.view;
    fill(
      "account",
      pairs([
        ["bond", v ? units(v.bond, POD) + " POD" : "–"],
        ["staked", v ? units(v.staked, POD) + " POD" : "–"],
        ["voting weight", v ? units(v.validator_weight, POD) : "–"],
        ["rewards claimed", v ? units(v.rewards_claimed, POD) + " POD" : "–"],
        ["awards for caught cheaters", units(s.awards.total, POD) + " POD (" + s.awards.count + ")"],
      ]),
    );
    charts.draw(s.history);
    const c = s.counters;
    fill(
      "verdicts",
      pairs([
        ["challenges passed", number(c.challenges.passed, 0)],
        ["failed", number(c.challenges.failed, 0)],
        ["unanswered", number(c.challenges.unanswered, 0)],
        ["unchecked", number(c.challenges.unchecked, 0)],
        ["strikes published", number(c.strikes_published, 0)],
        ["others' strikes reproduced / not", number(c.strikes_received.yes, 0) + " / " + number(c.strikes_received.no, 0)],
        ["bans", number(s.bans, 0)],
        ["slashes submitted", number(c.slashes_submitted, 0)],
      ]),
    );
    const failed = Object.entries(c.check_failures).filter(([, n]) => n > 0);
    fill("failures", table(["check", "failures"], failed.map(([name, n]) => [name, number(n, 0)]), "No check failed."));
    fill(
      "nodes",
      table(
        ["node key", "standing", "suspicion", "checks this epoch", "failed"],
        s.nodes.map((n) => [el("code", { title: n.node_key }, short(n.node_key)), badge(n.status, STANDING[n.status] || "off"), number(n.suspicion * 100, 1) + " %", n.checks_this_epoch, n.failed_this_epoch]),
        "No node sampled yet.",
      ),
    );
    fill(
      "strikes",
      table(
        ["node key", "reason", "severity", "epoch", "by", "counted", "evidence"],
        s.strikes.map((k) => [el("code", { title: k.node_key }, short(k.node_key)), k.reason, k.severity, k.epoch, k.own ? "us" : el("code", {}, short(k.validator)), k.counted ? "yes" : "no", el("code", { title: k.evidence_hash }, short(k.evidence_hash))]),
        "No strikes.",
      ),
    );
    const m = s.money;
    if (!m) {
      fill("epochs", el("p", { class: "muted" }, "No chain: nothing is settled."));
    } else {
      const held = Object.entries(m.receipts_held);
      fill(
        "epochs",
        pairs([
          ["settled through", m.loop ? m.loop.settled_through : "–"],
          ["receipts held", held.length ? held.map(([e, n]) => `epoch ${e}: ${n}`).join(", ") : "none"],
          ["validator peers", m.loop ? m.loop.validator_peers : "–"],
        ]),
        table(
          ["epoch", "receipts", "root", "status", "our cumulative rewards", "debit batches settled"],
          m.settled.map((e) => [e.epoch, e.receipts, e.rewards_root ? el("code", { title: e.rewards_root }, short(e.rewards_root)) : "–", e.root_status, e.our_cumulative_rewards === null ? "–" : units(e.our_cumulative_rewards, POD) + " POD", e.debit_batches_settled + " / " + e.debit_batches]),
          "No epoch settled yet.",
        ),
      );
    }
    fill(
      "buyback",
      v
        ? pairs([
            ["this wallet keeps it", chain.keeper ? "yes" : "no"],
            ["revenue", units(v.revenue, USD)],
            ["waiting to be swapped", units(v.awaiting_buyback, USD)],
            ["POD bought back", units(v.pod_bought_back, POD)],
            ["read", ago(chain.read_at_ms, s.now_ms)],
          ])
        : el("p", { class: "muted" }, chain.configured ? "Waiting for the chain." : "No chain configured."),
    );
  }

  poll(render);
})();
