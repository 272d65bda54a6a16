// The node's dashboard: draws GET /status (node/status.py) every second.
"use strict";

(() => {
  const { el, fill, text, number, units, ago, badge, table, pairs, historyCharts, poll } = Dash;
  const POD = 18;
  const charts = historyCharts({
    requests: { key: "requests_per_s", unit: "req/s" },
    tokens: { key: "output_tokens_per_s", color: "#1f8a4c", unit: "tok/s" },
    ttft: { key: "ttft_ms", color: "#8e44ad", unit: "ms" },
    queue: { key: "queued", color: "#b7791f", unit: "waiting" },
  });

  // What an operator can do about each strike reason (protocols/messages.py STRIKE_REASONS).
  const ADVICE = {
    wrong_model: "Serve exactly the model folder you announce: re-import it with `dolphin model` and restart.",
    tokenizer_mismatch: "The tokenizer files differ from the model's manifest: re-import the model folder.",
    too_slow: "The node answers below the model's minimum speed: lower --max-batch, free the GPU, or serve a smaller model.",
    too_fast: "Answers arrive faster than the model can produce them: check that the engine really runs the announced model.",
    bad_receipt: "A receipt contradicts what was served: check the node's clock (NTP) and update the software.",
    unavailable: "The node advertised capacity but did not answer: check its connectivity (relay, firewall) and engine health.",
    fabricated_output: "Output was not produced by the model: stop any proxy or cache in front of the engine.",
    user_report: "A validator confirmed a user's report: read the evidence, fix the cause before more strikes ban the node.",
    false_benchmark: "Delivered speed is far below the node's own benchmark: delete the benchmark cache and restart to re-measure.",
  };

  function reachability(n) {
    if (n.reachable === true) return "directly";
    if (n.circuit_addrs.length) return "through a relay";
    if (n.reachable === null) return "checking";
    return "not yet: no direct address works and no relay reservation";
  }

  function claims(s, facts, chain) {
    if (!facts) return el("p", { class: "muted" }, chain.configured ? "Waiting for the chain." : "No chain configured: nothing to claim.");
    if (!s.claims) return el("p", { class: "muted" }, "Register the node (dolphin node register) to earn rewards.");
    const c = s.claims;
    let available = "no rewards root yet";
    if (c.root_epoch > 0) {
      if (c.available !== null) available = units(c.available, POD) + " POD";
      else available = c.error ? "cannot fetch the rewards tree: " + c.error : "fetching the rewards tree";
    }
    return pairs([
      ["rewards root", c.root_epoch > 0 ? "epoch " + c.root_epoch : "none yet"],
      ["claimed so far", units(c.claimed, POD) + " POD"],
      ["available to claim", available],
      ["to claim", el("code", {}, "dolphin chain claim --bootstrap ADDR")],
    ]);
  }

  function servingBadge(s) {
    if (s.draining) return badge("draining", "warn");
    if (!s.engine.healthy) return badge("engine down", "bad");
    if (!s.serving) return badge("paused", "warn");
    return badge("serving", "ok");
  }

  function render(s) {
    text("peer-id", s.peer_id);
    fill("serving").replaceWith(Object.assign(servingBadge(s), { id: "serving" }));
    const e = s.engine;
    fill(
      "status",
      pairs([
        ["models", el("span", {}, ...s.models.map((m, i) => el("span", { title: m.id }, (i ? ", " : "") + m.name)))],
        ["engine", `${e.name}: ${e.healthy ? "healthy" : "UNHEALTHY"}, ${e.running} running, ${e.waiting} waiting, capacity ${e.capacity}`],
        ["node key", el("code", {}, s.node_key)],
        ["up since", ago(s.started_at_ms, s.now_ms)],
      ]),
    );
    const n = s.network;
    const chain = s.chain;
    let chainState = badge("no chain", "off");
    if (chain.configured) chainState = chain.reachable ? badge("reachable", "ok") : badge("unreachable", "bad");
    const facts = chain.facts;
    fill(
      "network",
      pairs([
        ["reachable", reachability(n)],
        ["advertised", n.advertised_addrs.length ? el("div", {}, ...n.advertised_addrs.map((a) => el("div", { class: "mono" }, a))) : "none"],
        ["listening", el("div", {}, ...n.listen_addrs.map((a) => el("div", { class: "mono" }, a)))],
        ["registered", s.registered ? (facts && !facts.registered ? "binding stored, NOT registered on chain" : "yes") : "no (dolphin node register)"],
        ["operator", s.operator || "–"],
        ["bond", facts ? units(facts.bond, POD) + " POD" : "–"],
        ["chain", el("span", {}, chainState, " ", chain.url || "", chain.error ? el("div", { class: "muted" }, chain.error) : null)],
      ]),
    );
    charts.draw(s.history);
    const c = s.counters;
    fill(
      "served",
      pairs([
        ["network answers", number(c.requests.network, 0)],
        ["local answers", number(c.requests.local, 0)],
        ["abandoned", number(c.abandoned, 0)],
        ["tokens in / out", number(c.tokens.prompt, 0) + " / " + number(c.tokens.output, 0)],
        ["receipts stored", number(c.receipts_stored, 0)],
      ]),
    );
    const refused = Object.entries(c.refusals).filter(([, count]) => count > 0);
    fill("refusals", table(["reason", "count"], refused.map(([r, count]) => [r, number(count, 0)]), "No request refused."));
    const r = s.receipts;
    const estimate = r.estimated_reward;
    fill(
      "epoch",
      pairs([
        ["epoch", r.epoch],
        ["receipts", number(r.receipts, 0) + " (" + number(r.paid_receipts, 0) + " paid)"],
        ["tokens in / out", number(r.tokens_in, 0) + " / " + number(r.tokens_out, 0)],
        ["paid revenue", estimate ? units(estimate.paid_revenue, 6) + " (payment token)" : "–"],
        ["estimated reward", estimate ? "at most " + units(estimate.base_reward_value_at_most, 6) + " (payment token) worth of POD, before the boost" : "needs the chain"],
      ]),
    );
    fill("claims", claims(s, facts, chain));
    if (s.strikes === null) {
      fill("strikes", el("p", { class: "muted" }, "Strikes are watched only with a chain (it says who the validators are)."));
    } else {
      fill(
        "strikes",
        s.strikes.length
          ? el(
              "div",
              {},
              ...s.strikes.map((k) =>
                el(
                  "div",
                  { class: "strike" },
                  table(
                    ["when", "reason", "severity", "epoch", "validator", "evidence"],
                    [[ago(k.received_at_ms, s.now_ms), k.reason, k.severity, k.epoch, el("code", {}, k.validator), el("code", {}, k.evidence_hash + " (" + k.evidence_items + " items)")]],
                    "",
                  ),
                  el("p", { class: "advice" }, ADVICE[k.reason] || "Read the evidence and fix the cause."),
                ),
              ),
            )
          : el("p", { class: "muted" }, "No strikes: validators are satisfied."),
      );
    }
    const subs = Object.entries(s.submissions);
    fill(
      "submissions",
      table(
        ["validator peer", "stored", "already held", "refused"],
        subs.map(([peer, t]) => [el("code", {}, peer), number(t.stored || 0, 0), number(t.duplicate || 0, 0), number(t.refused || 0, 0)]),
        "No receipts handed over yet.",
      ),
    );
  }

  poll(render);
})();
