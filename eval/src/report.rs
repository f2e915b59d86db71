//! The evaluation's output: the three tables, a CSV and an SVG chart.

use std::{fmt::Write as _, io, path::Path};

use viommu_eval_driver::Policy;

use crate::{eval::RunResult, frontend::Frontend, seed};

/// The best run (least loop cycles: preemption only adds) of each
/// front end and policy.
pub struct Results {
    /// Front ends in the order run.
    pub frontends: Vec<Frontend>,
    /// Best run per (front end, policy).
    pub runs: Vec<RunResult>,
    /// The exit cost the modelled front end charged, if any ran.
    pub modelled_exit_cycles: u64,
    /// Buffers per run.
    pub buffers: u64,
}

impl Results {
    /// The run of `frontend` under `policy`.
    #[must_use]
    pub fn get(&self, frontend: Frontend, policy: Policy) -> Option<&RunResult> {
        self.runs.iter().find(|r| r.frontend == frontend && r.policy == policy)
    }

    /// Throughput of `frontend` under `policy` relative to its no-IOMMU run.
    #[must_use]
    pub fn relative(&self, frontend: Frontend, policy: Policy) -> Option<f64> {
        let base = self.get(frontend, Policy::NoIommu)?.cycles_per_buffer();
        let run = self.get(frontend, policy)?.cycles_per_buffer();
        (run > 0.0).then(|| base / run)
    }

    fn label(f: Frontend) -> String {
        match f {
            Frontend::ModelledTrap => "trap & emulate [modelled]".into(),
            Frontend::SidecoreNoVm => "sidecore [in-process, no VM]".into(),
            f => f.name().into(),
        }
    }

    /// The three tables, as printed.
    #[must_use]
    pub fn tables(&self) -> String {
        let mut s = String::new();
        let m = |f: Frontend| if f == Frontend::ModelledTrap { "  (modelled)" } else { "" };
        let _ = writeln!(
            s,
            "(a) map + unmap of one page, strict invalidation (policy secure), TSC cycles,\n    median of {} buffers; seed: Xeon X5570 cycles",
            self.buffers
        );
        let _ = writeln!(
            s,
            "    {:<30} {:>8} {:>8} {:>8} | {:>9} {:>6} {:>6}",
            "", "map", "unmap", "total", "seed map", "unmap", "total"
        );
        for &f in &self.frontends {
            let Some(r) = self.get(f, Policy::Secure) else { continue };
            let (sm, su) = seed::map_unmap(f).unwrap_or((0, 0));
            let _ = writeln!(
                s,
                "    {:<30} {:>8} {:>8} {:>8} | {:>9} {:>6} {:>6}{}",
                Self::label(f),
                r.map_median(),
                r.unmap_median(),
                r.map_median() + r.unmap_median(),
                sm,
                su,
                sm + su,
                m(f)
            );
        }
        let _ = writeln!(
            s,
            "\n(b) receive throughput relative to the same front end without IOMMU, %: this host,\n    driver cycles per buffer of a NIC model (mean, preempted buffers dropped);\n    seed: netperf TCP, % of 9.3 Gbps"
        );
        let _ = writeln!(
            s,
            "    {:<30} {:>8} {:>8} {:>10} | {:>6} {:>7} {:>10} | {:>14}",
            "", "secure", "relaxed", "optimistic", "seed", "", "", "none, cycles"
        );
        let pols = [Policy::Secure, Policy::Relaxed, Policy::Optimistic];
        for &f in &self.frontends {
            let pct = |p| self.relative(f, p).map_or("-".into(), |x| format!("{:.0}", x * 100.0));
            let sd = |p| seed::netperf(f, p).map_or("-".into(), |x: u32| x.to_string());
            let base = self.get(f, Policy::NoIommu).map_or(0.0, RunResult::cycles_per_buffer);
            let _ = writeln!(
                s,
                "    {:<30} {:>8} {:>8} {:>10} | {:>6} {:>7} {:>10} | {:>14.0}{}",
                Self::label(f),
                pct(pols[0]),
                pct(pols[1]),
                pct(pols[2]),
                sd(pols[0]),
                sd(pols[1]),
                sd(pols[2]),
                base,
                m(f)
            );
        }
        let dropped: Vec<String> = self
            .frontends
            .iter()
            .map(|&f| {
                let n: Vec<String> = Policy::ALL
                    .iter()
                    .map(|&p| {
                        self.get(f, p).map_or("-".into(), |r| r.samples.preempted.to_string())
                    })
                    .collect();
                format!("{} {}", Self::label(f), n.join("/"))
            })
            .collect();
        let _ = writeln!(
            s,
            "    buffers dropped as preempted (none/secure/relaxed/optimistic): {}",
            dropped.join(", ")
        );
        for &f in &self.frontends {
            if f == Frontend::BareMetal {
                continue;
            }
            let (Some(o), Some(r)) =
                (self.relative(f, Policy::Optimistic), self.relative(f, Policy::Relaxed))
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "    optimistic / relaxed under {}: {:.1}x (seed: \"over 7 times faster than relaxed in guest\"){}",
                Self::label(f),
                o / r,
                m(f)
            );
        }
        let busy: Vec<String> = Policy::ALL
            .iter()
            .filter_map(|&p| {
                let st = self
                    .get(Frontend::Sidecore, p)
                    .or_else(|| self.get(Frontend::SidecoreNoVm, p))?
                    .sidecore?;
                Some(format!("{} {:.1}%", p.name(), st.busy_fraction() * 100.0))
            })
            .collect();
        if !busy.is_empty() {
            let _ = writeln!(
                s,
                "    sidecore busy (forwarding and publishing, not just polling): {} (seed: \"at most 33% of the time\")",
                busy.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "\n(c) per buffer: register exits (trap: KVM MMIO exits to the VMM; modelled: charged\n    accesses; sidecore: none, the page is polled) / IQT writes / mappings reused\n    / guest pages pinned / unpinned by the vIOMMU (- : no vIOMMU)"
        );
        let _ =
            writeln!(s, "    {:<30} {:>34} {:>34} {:>34}", "", "secure", "relaxed", "optimistic");
        for &f in &self.frontends {
            let cell = |p| {
                self.get(f, p).map_or("-".into(), |r: &RunResult| {
                    let pins = r
                        .pins_per_buffer()
                        .map_or("- / -".into(), |(p, u)| format!("{p:.2} / {u:.2}"));
                    format!(
                        "{:.2} / {:.2} / {:.2} / {pins}",
                        r.exits_per_buffer(),
                        r.iqt_per_buffer(),
                        r.report.reuse_hits as f64 / r.report.buffers.max(1) as f64
                    )
                })
            };
            let _ = writeln!(
                s,
                "    {:<30} {:>34} {:>34} {:>34}{}",
                Self::label(f),
                cell(pols[0]),
                cell(pols[1]),
                cell(pols[2]),
                m(f)
            );
        }
        for &f in &self.frontends {
            let serve: Vec<String> = pols
                .iter()
                .filter_map(|&p| {
                    let c = self.get(f, p)?.vmm_cycles_per_exit()?;
                    Some(format!("{} {c:.0}", p.name()))
                })
                .collect();
            if !serve.is_empty() {
                let _ = writeln!(
                    s,
                    "    {}: VMM cycles per exit serving the vIOMMU (emulation, shadowing,\n    host invalidation; not the exit itself): {}",
                    Self::label(f),
                    serve.join(", ")
                );
            }
        }
        let _ = writeln!(
            s,
            "    seed: no per-buffer counts published (\"each mapping change results in VM-exit\");\n    expected: strict = an IQT write per unmap and, in caching mode, per map; the vIOMMU\n    pins a page when the guest's map is invalidated and unpins it after the host\n    invalidation that follows the guest's unmap"
        );
        s
    }

    /// One CSV line per run.
    #[must_use]
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "frontend,modelled,policy,buffers,map_median_cycles,unmap_median_cycles,map_mean_cycles,unmap_mean_cycles,cycles_per_buffer,preempted_buffers,loop_cycles_per_buffer,relative_throughput,exits_per_buffer,iqt_writes_per_buffer,reuse_hits,pins,unpins,vmm_cycles_per_exit,seed_map_cycles,seed_unmap_cycles,seed_netperf_percent\n",
        );
        for r in &self.runs {
            let (sm, su) = match r.policy {
                Policy::Secure => seed::map_unmap(r.frontend).unwrap_or((0, 0)),
                _ => (0, 0),
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.1},{:.1},{:.1},{},{:.1},{:.4},{:.3},{:.3},{},{},{},{},{},{},{}",
                r.frontend.name(),
                r.frontend == Frontend::ModelledTrap,
                r.policy.name(),
                r.report.buffers,
                r.map_median(),
                r.unmap_median(),
                r.map_cycles(),
                r.unmap_cycles(),
                r.cycles_per_buffer(),
                r.samples.preempted,
                r.loop_cycles_per_buffer(),
                self.relative(r.frontend, r.policy).unwrap_or(0.0),
                r.exits_per_buffer(),
                r.iqt_per_buffer(),
                r.report.reuse_hits,
                r.pins.map_or(String::new(), |p| p.pins.to_string()),
                r.pins.map_or(String::new(), |p| p.unpins.to_string()),
                r.vmm_cycles_per_exit().map_or(String::new(), |c| format!("{c:.0}")),
                sm,
                su,
                seed::netperf(r.frontend, r.policy).unwrap_or(0),
            );
        }
        s
    }

    fn svg_label(f: Frontend) -> String {
        Self::label(f).replace('&', "&amp;")
    }

    /// A grouped bar chart of (b): one group per front end, one bar per
    /// policy, the seed's figure as a tick on each bar.
    #[must_use]
    pub fn svg(&self) -> String {
        let pols = [Policy::Secure, Policy::Relaxed, Policy::Optimistic];
        let colors = ["#c0392b", "#e67e22", "#27ae60"];
        let (w, h, left, top, plot_h) = (760.0, 380.0, 60.0, 40.0, 260.0);
        let group_w = (w - left - 20.0) / self.frontends.len().max(1) as f64;
        let bar_w = group_w / 4.0;
        let y = |pct: f64| top + plot_h * (1.0 - pct.clamp(0.0, 110.0) / 110.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">Receive throughput relative to no IOMMU (%), bars: this host, ticks: seed (netperf)</text>"#,
            w / 2.0
        );
        for pct in [0, 25, 50, 75, 100] {
            let yy = y(f64::from(pct));
            let _ = writeln!(
                s,
                "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{pct}</text>",
                w - 20.0,
                left - 6.0,
                yy + 4.0
            );
        }
        for (gi, &f) in self.frontends.iter().enumerate() {
            let gx = left + gi as f64 * group_w + bar_w / 2.0;
            for (pi, &p) in pols.iter().enumerate() {
                let x = gx + pi as f64 * bar_w;
                if let Some(rel) = self.relative(f, p) {
                    let pct = rel * 100.0;
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {pct:.0}%</title></rect>"#,
                        y(pct),
                        bar_w - 4.0,
                        top + plot_h - y(pct),
                        colors[pi],
                        Self::svg_label(f),
                        p.name()
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{pct:.0}</text>"#,
                        x + (bar_w - 4.0) / 2.0,
                        y(pct) - 3.0
                    );
                }
                if let Some(sd) = seed::netperf(f, p) {
                    let _ = writeln!(
                        s,
                        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="2" stroke-dasharray="3,2"/>"#,
                        x - 2.0,
                        y(f64::from(sd)),
                        x + bar_w - 2.0,
                        y(f64::from(sd))
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + 1.5 * bar_w,
                top + plot_h + 18.0,
                Self::svg_label(f)
            );
        }
        for (pi, &p) in pols.iter().enumerate() {
            let x = left + pi as f64 * 120.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                h - 30.0,
                colors[pi],
                x + 16.0,
                h - 20.0,
                p.name()
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="black" stroke-width="2" stroke-dasharray="3,2"/><text x="{3}" y="{4}">seed</text>"#,
            left + 380.0,
            h - 24.0,
            left + 400.0,
            left + 404.0,
            h - 20.0
        );
        s.push_str("</svg>\n");
        s
    }

    /// Writes `results.csv` and `throughput.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (csv, svg) = (dir.join("results.csv"), dir.join("throughput.svg"));
        std::fs::write(&csv, self.csv())?;
        std::fs::write(&svg, self.svg())?;
        Ok((csv, svg))
    }
}
