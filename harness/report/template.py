"""The HTML of a run report (jinja2, autoescaped). Self-contained: no script, no external CSS,
fonts or images; plots are embedded as base64 PNG."""

from __future__ import annotations

CSS = """
:root { --ok: #2e7d32; --fail: #c62828; --muted: #616161; --line: #e0e0e0; --bg: #fafafa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", sans-serif;
       margin: 0; padding: 0 2rem 3rem; color: #212121; background: #fff; line-height: 1.4; }
header { border-bottom: 3px solid #1e88e5; padding: 1rem 0 0.6rem; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
.sub { color: var(--muted); font-size: 0.9rem; }
.badge { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 0.8rem; font-size: 0.8rem;
         font-weight: 600; color: #fff; background: var(--muted); vertical-align: middle; }
.badge.ok { background: var(--ok); } .badge.fail { background: var(--fail); }
.badge.warn { background: #ef6c00; }
.chip { display: inline-block; border: 1px solid #90caf9; background: #e3f2fd; border-radius: 0.3rem;
        padding: 0 0.35rem; margin: 0 0.2rem 0.2rem 0; font-size: 0.8rem; font-family: monospace; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #ffebee; }
.pass { color: var(--ok); font-weight: 600; } .failtxt { color: var(--fail); font-weight: 600; }
.outcome { font-family: monospace; }
figure { margin: 0.5rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.85rem; }
details { margin: 0.3rem 0 1rem; } summary { cursor: pointer; color: #1565c0; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 0 2rem; }
ul.dev li { color: #e65100; }
footer { margin-top: 3rem; color: var(--muted); font-size: 0.8rem; border-top: 1px solid var(--line); padding-top: 0.5rem; }
"""

RUN_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness report {{ run.id }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
  <h1>Run {{ run.id }}
    <span class="badge {{ 'ok' if run.status == 'complete' else 'warn' }}">{{ run.status }}</span>
    {% if run.total %}<span class="badge {{ 'ok' if run.passed == run.total else 'fail' }}">
      {{ run.passed }}/{{ run.total }} verdicts match</span>{% endif %}
  </h1>
  <div class="sub">suite <b>{{ run.suite }}</b> · backend <b>{{ run.backend }}</b> · host <b>{{ run.host }}</b>
    · started {{ run.started }}{% if run.duration %} · {{ run.duration }}{% endif %}</div>
  <div>{% for k, v in run.labels %}<span class="chip">{{ k }}={{ v }}</span>{% endfor %}</div>
</header>

{% if run.missing %}<p class="failtxt">This run has no {{ run.missing|join(', ') }} table(s): the report shows
what exists.</p>{% endif %}

<h2 id="summary">Scenarios</h2>
<table>
  <tr><th>scenario</th><th>workloads: predicted → observed</th><th>verdicts</th></tr>
  {% for sc in scenarios %}
  <tr class="{{ '' if sc.ok else 'fail' }}">
    <td><a href="#sc-{{ sc.anchor }}">{{ sc.name }}</a></td>
    <td>{% for v in sc.verdicts %}<span class="outcome">{{ v.workload }}: {{ v.predicted }} → {{ v.observed }}</span>{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
    <td class="{{ 'pass' if sc.ok else 'failtxt' }}">{{ sc.passed }}/{{ sc.verdicts|length }}</td>
  </tr>
  {% endfor %}
</table>

<div class="grid">
<div>
<h2 id="host">Host facts</h2>
<table>{% for k, v in host %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
</div>
<div>
<h2 id="versions">Versions</h2>
<table>{% for k, v in versions %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if deviations %}<h3>Host deviations</h3>
<ul class="dev">{% for d in deviations %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}
</div>
</div>

{% for sc in scenarios %}
<section id="sc-{{ sc.anchor }}">
<h2>{{ sc.name }} <span class="badge {{ 'ok' if sc.ok else 'fail' }}">{{ sc.passed }}/{{ sc.verdicts|length }}</span></h2>
{% if sc.png %}
<figure>
  <img src="data:image/png;base64,{{ sc.png }}" alt="timeline of scenario {{ sc.name }}" width="{{ sc.width }}" height="{{ sc.height }}">
  <figcaption>Top: node available (green), node working set (yellow), pods' working set (blue) and each
  workload's working set against capacity, allocatable (red; the shaded band up to the kubepods limit is where
  the kubelet evicts pods), the kubepods limit (black; hatched above: pods cannot get there) and the
  memory.available eviction thresholds (dashed green, read on the green curve); vertical lines mark kernel OOM
  kills (red) and evictions (purple). Bottom: per workload, the predicted windows (bars) and the observed
  events (★ the classified outcome). t = 0 from {{ sc.t0_from }}; file <code>{{ sc.png_name }}</code>.</figcaption>
</figure>
{% else %}<p class="sub">No samples for this scenario: no plot.</p>{% endif %}
<h3>Verdicts</h3>
<table>
  <tr><th>workload</th><th>QoS / oom_score_adj</th><th>predicted</th><th>window (s)</th><th>observed</th>
      <th>t (s)</th><th>victim</th><th>verdict</th><th>reasons</th></tr>
  {% for v in sc.verdicts %}
  <tr class="{{ '' if v.passed else 'fail' }}">
    <td>{{ v.workload }}</td>
    <td>{{ v.qos }}</td>
    <td class="outcome">{{ v.predicted }}{% for a in v.alternatives %}<br><span class="sub">{{ a }}</span>{% endfor %}</td>
    <td class="num">{{ v.window }}</td>
    <td class="outcome">{{ v.observed }}</td>
    <td class="num">{{ v.t }}</td>
    <td>{{ v.victim }}</td>
    <td class="{{ 'pass' if v.passed else 'failtxt' }}">{{ 'match' if v.passed else 'MISMATCH' }}</td>
    <td>{% for r in v.reasons %}{{ r }}<br>{% endfor %}{% for d in v.deviations %}<span class="sub">host: {{ d }}</span><br>{% endfor %}
        {% if v.mechanism %}<span class="sub">model: {{ v.mechanism }}</span>{% endif %}
        {% if v.evidence %}<br><span class="sub">evidence: {{ v.evidence }}</span>{% endif %}</td>
  </tr>
  {% endfor %}
</table>
{% if sc.notes %}<ul>{% for n in sc.notes %}<li class="sub">{{ n }}</li>{% endfor %}</ul>{% endif %}
<table>
  <tr><th>reference level</th><th>value</th></tr>
  {% for k, v in sc.levels %}<tr><td>{{ k }}</td><td class="num">{{ v }}</td></tr>{% endfor %}
</table>
<details><summary>{{ sc.events|length }} events{% if sc.event_kinds %} ({{ sc.event_kinds }}){% endif %}</summary>
<table>
  <tr><th>t (s)</th><th>source</th><th>kind</th><th>workload</th><th>details</th></tr>
  {% for e in sc.events %}<tr><td class="num">{{ e.t }}</td><td>{{ e.source }}</td><td>{{ e.kind }}</td>
    <td>{{ e.workload }}</td><td>{{ e.text }}</td></tr>{% endfor %}
</table>
{% if sc.events_cut %}<p class="sub">{{ sc.events_cut }} more events not listed.</p>{% endif %}
</details>
</section>
{% endfor %}

<details><summary>kubelet profiles and node facts as recorded</summary>
<pre>{{ profiles }}</pre>
</details>

<footer>Generated by harness {{ harness_version }} from <code>{{ run.dir }}</code> at {{ generated }}.
Self-contained file: no script, no network.</footer>
</body>
</html>
"""
