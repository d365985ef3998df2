"""A comparison as JUnit XML: CI systems show each compared level as a test case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from analysis.compare import Comparison, Verdict


def junit_xml(comparison: Comparison) -> ET.Element:
    """JUnit XML for CI: one testcase per matched level, a ``<failure>`` for each regressed one.

    Levels measured by one run only are skipped testcases; warnings go to ``<system-err>``.
    A level within noise passes, its ``<system-out>`` says so; each setting that differs is
    also a property ``differs: SETTING``.
    """
    c = comparison
    failures = sum(s.verdict is Verdict.REGRESSION for s in c.steps)
    skipped = len(c.only_in_base) + len(c.only_in_new)
    counts = {"tests": str(len(c.steps) + skipped), "failures": str(failures), "errors": "0"}
    name = f"{c.new.model}: run {c.new.id} vs base run {c.base.id}"
    suites = ET.Element("testsuites", {"name": "loadgen compare", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": name, "skipped": str(skipped), **counts})
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", str(c.verdict)),
        ("base_run", str(c.base.id)),
        ("new_run", str(c.new.id)),
        ("base_status", str(c.base.status)),
        ("new_status", str(c.new.status)),
        ("max_throughput_drop_pct", f"{c.thresholds.max_throughput_drop_pct:g}"),
        ("max_latency_rise_pct", f"{c.thresholds.max_latency_rise_pct:g}"),
        ("percentile", f"{c.thresholds.percentile:g}"),
        ("noise_aware", str(c.thresholds.noise_aware).lower()),
        ("within_noise_steps", str(len(c.within_noise))),
        *(
            (f"differs: {d.setting}", f"{d.base} (run {c.base.id}) vs {d.new} (run {c.new.id})")
            for d in c.setting_differences
        ),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    classname = f"loadgen.compare.{c.new.model}"
    p = c.thresholds.percentile
    for step in c.steps:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{c.level_name} {step.level:g}")
        gate = step.latency(p)
        summary = (
            f"throughput {step.base_throughput:.1f} -> {step.new_throughput:.1f} infer/s "
            f"({step.throughput_change_pct:+.1f}%), p{p:g} latency {gate.base_us / 1000:.3f} -> "
            f"{gate.new_us / 1000:.3f} ms ({gate.change_pct:+.1f}%)"
        )
        if step.verdict is Verdict.REGRESSION:
            failure = ET.SubElement(case, "failure", message="; ".join(step.reasons), type="regression")
            failure.text = summary
        else:
            why = f" ({'; '.join(step.reasons)})" if step.reasons else ""
            ET.SubElement(case, "system-out").text = f"{step.verdict}{why}: {summary}"
    for run_id, levels in ((c.base.id, c.only_in_base), (c.new.id, c.only_in_new)):
        for level in levels:
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"{c.level_name} {level:g}")
            ET.SubElement(case, "skipped", message=f"measured by run {run_id} only")
    if c.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(c.warnings)
    ET.indent(suites)
    return suites


def write_junit(comparison: Comparison, path: Path | str) -> None:
    ET.ElementTree(junit_xml(comparison)).write(path, encoding="utf-8", xml_declaration=True)
