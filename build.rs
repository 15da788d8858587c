//! Detects the Cortex-M DSP extension (SMLAD, SXTB16) for the optimized int8 kernels.
//!
//! Stable rustc does not expose Arm target features to `cfg(target_feature = ...)` (they are
//! unstable names), so this script sets `picoformer_dsp` itself: always for Armv7E-M
//! (`thumbv7em-*`, where DSP is part of the architecture), and for Armv8-M Mainline
//! (`thumbv8m.main-*`) when the rustflags name a core with the extension (`-C target-cpu=cortex-m33`,
//! `cortex-m35p`, `cortex-m55`, `cortex-m85`) or enable it (`-C target-feature=+dsp`).
//! It sets `picoformer_fpu` for hard-float targets (`*eabihf`, an FPv4/FPv5 single-precision FPU),
//! and `picoformer_v6m` for Armv6-M (`thumbv6m-*`: Cortex-M0/M0+/M1, Thumb-1 only, no DSP), which
//! gets its own scalar int8 kernel (`kernels::m0`).

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(picoformer_dsp)");
    println!("cargo::rustc-check-cfg=cfg(picoformer_fpu)");
    println!("cargo::rustc-check-cfg=cfg(picoformer_v6m)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let joined = flags.join(" ");
    let dsp_cpu = ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"]
        .iter()
        .any(|cpu| joined.contains(&format!("target-cpu={cpu}")));
    let plus_dsp = joined.contains("+dsp") && !joined.contains("-dsp");
    let dsp = target.starts_with("thumbv7em") || (target.starts_with("thumbv8m.main") && (dsp_cpu || plus_dsp));
    if dsp {
        println!("cargo::rustc-cfg=picoformer_dsp");
    }
    if (target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main")) && target.ends_with("eabihf") {
        println!("cargo::rustc-cfg=picoformer_fpu");
    }
    if target.starts_with("thumbv6m") {
        println!("cargo::rustc-cfg=picoformer_v6m");
    }
}
