//! Int8 matrix-vector kernel for cores with the Armv7E-M / Armv8-M DSP extension (Cortex-M4, M7,
//! M33, M55 ...), in stable `core::arch` assembly (the `core::arch::arm` DSP intrinsics are
//! unstable). Compiled when the build script sets `picoformer_dsp` (see `build.rs`).
//!
//! The matrix is in the 4-row panel layout (`kernels::panel`), the activation expanded once per
//! vector into halfword pairs (`panel::expand_activation`). Per group of 4 columns and 4 rows (16
//! multiply-accumulates) the inner loop issues 18 instructions: one `LDRD` of the two activation
//! words, one `LDM` of the four rows' weight words, and per row two `SXTB16` (the even and the odd
//! bytes, the latter with `ROR #8`) and two `SMLAD` (two products each). Integer results are
//! exact, so they are identical to the portable kernels' (tested on the emulated boards by the
//! firmware's `!selftest` and by `host-tools/tests/bench_qemu.rs`).

use super::dot_i8;
use super::panel::{panel_dots_portable, GROUP_COLS, PANEL_ROWS};

/// One 4-column group of a panel: r0 = weights, r1 = expanded activation, r4/r5/r8/r9 = the four
/// rows' accumulators, r3 = scratch, r6/r7/r10/r11 = the rows' weight words, r12/lr = the two
/// activation words.
macro_rules! group {
    () => {
        "ldrd r12, lr, [r1], #8
         ldm r0!, {{r6, r7, r10, r11}}
         sxtb16 r3, r6
         smlad r4, r3, r12, r4
         sxtb16 r6, r6, ror #8
         smlad r4, r6, lr, r4
         sxtb16 r3, r7
         smlad r5, r3, r12, r5
         sxtb16 r7, r7, ror #8
         smlad r5, r7, lr, r5
         sxtb16 r3, r10
         smlad r8, r3, r12, r8
         sxtb16 r10, r10, ror #8
         smlad r8, r10, lr, r8
         sxtb16 r3, r11
         smlad r9, r3, r12, r9
         sxtb16 r11, r11, ror #8
         smlad r9, r11, lr, r9"
    };
}

/// The dot products of one panel body, shared by both kernels: saves r2, r3, r6, r7 (r2 = group
/// count, r3 = the caller's pointer, restored by the caller's `pop`), zeroes the four accumulators,
/// runs four groups per iteration, then the remaining 0-3 groups; ends at label 5 with the sums in
/// r4, r5, r8, r9.
macro_rules! panel_loop {
    () => {
        concat!(
            "push {{r2, r3, r6, r7}}\n",
            "movs r4, #0\n",
            "movs r5, #0\n",
            "mov.w r8, #0\n",
            "mov.w r9, #0\n",
            "lsrs r2, r2, #2\n",
            "beq 3f\n",
            "2:\n",
            group!(),
            "\n",
            group!(),
            "\n",
            group!(),
            "\n",
            group!(),
            "\n",
            "subs r2, r2, #1\n",
            "bne 2b\n",
            "3:\n",
            "ldr r2, [sp]\n",
            "ands r2, r2, #3\n",
            "beq 5f\n",
            "4:\n",
            group!(),
            "\n",
            "subs r2, r2, #1\n",
            "bne 4b\n",
            "5:"
        )
    };
}

/// Dot products of the four rows of one panel body (`groups` groups of 16 bytes at `w`) with the
/// expanded activation `xe` (`2 * groups` words): four groups per iteration of the main loop,
/// then the remaining 0-3 groups one at a time.
///
/// # Safety
/// `w` must be 4-byte aligned with `16 * groups` readable bytes and `xe` must hold `2 * groups`
/// words.
#[inline(always)]
unsafe fn panel4_dots(w: *const i8, xe: *const u32, groups: usize) -> [i32; 4] {
    let (a0, a1, a2, a3): (i32, i32, i32, i32);
    // SAFETY (of the block, given the caller's contract): it reads `16 * groups` bytes from `w`
    // and `8 * groups` bytes from `xe`, writes no memory but the 16 bytes it pushes below the
    // stack pointer, and restores r6 and r7 (LLVM's base and frame pointers, which cannot be
    // operands) before it ends. Every other register it changes is an output or a clobber.
    unsafe {
        core::arch::asm!(
            panel_loop!(),
            "pop {{r2, r3, r6, r7}}",
            inout("r0") w => _,
            inout("r1") xe => _,
            inout("r2") groups => _,
            out("r3") _,
            out("r4") a0,
            out("r5") a1,
            out("r8") a2,
            out("r9") a3,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
    [a0, a1, a2, a3]
}

/// Where [`panel4_matvec`] finds a panel's scales and biases and puts its outputs; the routine
/// advances the three pointers by one panel (four rows).
#[repr(C)]
struct Epilogue {
    scales: *const f32,
    bias: *const f32,
    y: *mut f32,
    x_scale: f32,
}

/// [`panel4_dots`] followed by the dequantizing epilogue of the panel's four rows in the same
/// block: `y[i] = dot[i] as f32 * (scale[i] * x_scale) + bias[i]`, with `VCVT`, `VMUL` and the
/// chained (not fused) `VMLA`, which rounds the product before adding: bit-identical to the
/// portable expression.
///
/// # Safety
/// As [`panel4_dots`]; in addition `e.scales` and `e.bias` must have four readable f32 and `e.y`
/// four writable f32, all 4-byte aligned.
#[cfg(picoformer_fpu)]
#[inline(always)]
unsafe fn panel4_matvec(w: *const i8, xe: *const u32, groups: usize, e: &mut Epilogue) {
    // SAFETY (of the block, given the caller's contract): it reads `16 * groups` bytes from `w`,
    // `8 * groups` bytes from `xe`, four f32 from `e.scales` and `e.bias` and `e` itself, writes
    // four f32 to `e.y` and the three pointers of `e`, uses 16 bytes below the stack pointer and
    // restores r6 and r7 before it ends; every other register it changes is declared.
    unsafe {
        core::arch::asm!(
            panel_loop!(),
            "ldr r3, [sp, #4]",
            "ldm r3, {{r0, r1, r2}}",
            "vldr s8, [r3, #12]",
            "vldm r0!, {{s0-s3}}",
            "vldm r1!, {{s4-s7}}",
            "vmov s9, r4",
            "vmov s10, r5",
            "vmov s11, r8",
            "vmov s12, r9",
            "vcvt.f32.s32 s9, s9",
            "vcvt.f32.s32 s10, s10",
            "vcvt.f32.s32 s11, s11",
            "vcvt.f32.s32 s12, s12",
            "vmul.f32 s0, s0, s8",
            "vmul.f32 s1, s1, s8",
            "vmul.f32 s2, s2, s8",
            "vmul.f32 s3, s3, s8",
            "vmla.f32 s4, s9, s0",
            "vmla.f32 s5, s10, s1",
            "vmla.f32 s6, s11, s2",
            "vmla.f32 s7, s12, s3",
            "vstm r2!, {{s4-s7}}",
            "stm r3, {{r0, r1, r2}}",
            "pop {{r2, r3, r6, r7}}",
            inout("r0") w => _,
            inout("r1") xe => _,
            inout("r2") groups => _,
            inout("r3") e as *mut Epilogue => _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _,
        );
    }
}

/// Calls `sink(row, dot)` with the exact i32 dot product of every row of the panel-layout matrix
/// `w` with `xq` (`xe` = `xq` expanded), rows in order. Falls back to the portable kernel when
/// `xe` is too short or `w` is not 4-byte aligned (never the case for a blob's matrices).
#[inline(always)]
pub fn panel_dots(w: &[i8], xq: &[i8], xe: &[u32], mut sink: impl FnMut(usize, i32)) {
    let cols = xq.len().max(1);
    let groups = xq.len() / GROUP_COLS;
    let xe = xe.get(..2 * groups);
    let (Some(xe), true) = (xe, (w.as_ptr() as usize).is_multiple_of(4)) else {
        panel_dots_portable(w, xq, sink);
        return;
    };
    let rows = w.len() / cols;
    let full = rows / PANEL_ROWS;
    let (panels, rest) = w.split_at((full * PANEL_ROWS * cols).min(w.len()));
    let xt = xq.get(groups * GROUP_COLS..).unwrap_or(&[]);
    let t = xt.len().max(1);
    for (p, panel) in panels.chunks_exact(PANEL_ROWS * cols).enumerate() {
        let (body, tail) = panel.split_at(groups * PANEL_ROWS * GROUP_COLS);
        // SAFETY: `body` holds exactly `16 * groups` bytes and starts 4-byte aligned (`w` is
        // aligned and every panel is `4 * cols` bytes long); `xe` holds exactly `2 * groups`
        // words.
        let mut acc = unsafe { panel4_dots(body.as_ptr(), xe.as_ptr(), groups) };
        if !xt.is_empty() {
            for (a, wr) in acc.iter_mut().zip(tail.chunks_exact(t)) {
                *a += dot_i8(wr, xt);
            }
        }
        for (i, a) in acc.into_iter().enumerate() {
            sink(p * PANEL_ROWS + i, a);
        }
    }
    for (i, row) in rest.chunks_exact(cols).enumerate() {
        sink(full * PANEL_ROWS + i, row_dot(row, xq, xe));
    }
}

/// `y = dequant(Wq xq) + bias` for a panel-layout matrix: the DSP kernel per panel, then the
/// epilogue of four rows at once over fixed-size chunks (no per-row bounds checks). Bit-identical
/// to `panel::matvec_i8_panels_portable`.
#[inline(always)]
pub fn matvec_panels(w: &[i8], scales: &[f32], xq: &[i8], xe: &[u32], x_scale: f32, bias: &[f32], y: &mut [f32]) {
    let cols = xq.len().max(1);
    let groups = xq.len() / GROUP_COLS;
    let rows = y.len();
    let full = rows / PANEL_ROWS;
    let fits = w.len() >= rows * cols && scales.len() >= rows && bias.len() >= rows;
    let (Some(xe), true, true) = (xe.get(..2 * groups), (w.as_ptr() as usize).is_multiple_of(4), fits) else {
        super::panel::matvec_i8_panels_portable(w, scales, xq, x_scale, bias, y);
        return;
    };
    let xt = xq.get(groups * GROUP_COLS..).unwrap_or(&[]);
    #[cfg(picoformer_fpu)]
    if xt.is_empty() {
        let mut e = Epilogue {
            scales: scales.as_ptr(),
            bias: bias.as_ptr(),
            y: y.as_mut_ptr(),
            x_scale,
        };
        for panel in w.chunks_exact(PANEL_ROWS * cols).take(full) {
            // SAFETY: `panel` is `16 * groups` bytes (no tail columns), 4-byte aligned (`w` is,
            // and panels are `4 * cols` bytes); `xe` holds `2 * groups` words; `e` points at
            // rows `4p .. 4p + 4` of `scales`, `bias` and `y`, all at least `4 * full` long
            // (checked by `fits` above), and the routine advances it by four rows.
            unsafe { panel4_matvec(panel.as_ptr(), xe.as_ptr(), groups, &mut e) };
        }
        rest_rows(w, scales, xq, xe, x_scale, bias, y, full * PANEL_ROWS);
        return;
    }
    let t = xt.len().max(1);
    let (y4, _) = y.as_chunks_mut::<PANEL_ROWS>();
    let (s4, _) = scales.as_chunks::<PANEL_ROWS>();
    let (b4, _) = bias.as_chunks::<PANEL_ROWS>();
    let panels = w.chunks_exact(PANEL_ROWS * cols);
    for (((panel, yc), sc), bc) in panels.zip(y4.iter_mut()).zip(s4).zip(b4).take(full) {
        let (body, tail) = panel.split_at(groups * PANEL_ROWS * GROUP_COLS);
        // SAFETY: `body` holds exactly `16 * groups` bytes and starts 4-byte aligned (`w` is
        // aligned and every panel is `4 * cols` bytes long); `xe` holds exactly `2 * groups`
        // words.
        let mut acc = unsafe { panel4_dots(body.as_ptr(), xe.as_ptr(), groups) };
        if !xt.is_empty() {
            tail_dots(&mut acc, tail, xt, t);
        }
        for (((yi, a), s), b) in yc.iter_mut().zip(acc).zip(sc).zip(bc) {
            *yi = a as f32 * (s * x_scale) + b;
        }
    }
    rest_rows(w, scales, xq, xe, x_scale, bias, y, full * PANEL_ROWS);
}

/// The last `rows % 4` rows, stored row-major after the panels.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn rest_rows(w: &[i8], scales: &[f32], xq: &[i8], xe: &[u32], x_scale: f32, bias: &[f32], y: &mut [f32], done: usize) {
    let cols = xq.len().max(1);
    let rest = w.get(done * cols..).unwrap_or(&[]);
    let tail_rows = y.iter_mut().zip(scales).zip(bias).skip(done);
    for (((yi, s), b), row) in tail_rows.zip(rest.chunks_exact(cols)) {
        *yi = row_dot(row, xq, xe) as f32 * (s * x_scale) + b;
    }
}

/// Exact dot product of one row-major row with `xq`: `SXTB16` + `SMLAD` against the expanded
/// activation `xe` for whole groups of four columns, then the portable sum for the last
/// `cols % 4`. The same integer as [`dot_i8`]. (The rows left over after the 4-row panels, e.g.
/// 2 of the 42 of a G2P output projection, cost 5.2 instructions per MAC in the portable loop.)
#[inline]
fn row_dot(row: &[i8], xq: &[i8], xe: &[u32]) -> i32 {
    let (groups, _) = row.as_chunks::<GROUP_COLS>();
    let (pairs, _) = xe.as_chunks::<2>();
    let mut acc = 0i32;
    for (g, &[x02, x13]) in groups.iter().zip(pairs) {
        let w = u32::from_le_bytes(g.map(|b| b as u8));
        // SAFETY: register-only DSP instructions, present on every core this module is compiled
        // for (`picoformer_dsp`); `t` is a scratch output, distinct from the inputs.
        unsafe {
            core::arch::asm!(
                "sxtb16 {t}, {w}",
                "smlad {acc}, {t}, {x02}, {acc}",
                "sxtb16 {t}, {w}, ror #8",
                "smlad {acc}, {t}, {x13}, {acc}",
                w = in(reg) w,
                x02 = in(reg) x02,
                x13 = in(reg) x13,
                t = out(reg) _,
                acc = inout(reg) acc,
                options(pure, nomem, nostack),
            );
        }
    }
    let done = GROUP_COLS * groups.len().min(pairs.len());
    acc + dot_i8(row.get(done..).unwrap_or(&[]), xq.get(done..).unwrap_or(&[]))
}

/// Adds the last `cols % 4` columns of a panel's four rows (out of line: rare and short).
#[inline(never)]
fn tail_dots(acc: &mut [i32; PANEL_ROWS], tail: &[i8], xt: &[i8], t: usize) {
    for (a, wr) in acc.iter_mut().zip(tail.chunks_exact(t)) {
        *a += dot_i8(wr, xt);
    }
}

/// Expands `xq` into `out` (see `panel::expand_activation_portable`): per group of four values
/// one `LDR`, two `SXTB16` and one `STRD`. Returns the words written.
#[inline(always)]
pub fn expand_activation(xq: &[i8], out: &mut [u32]) -> usize {
    let groups = (xq.len() / GROUP_COLS).min(out.len() / 2);
    if groups == 0 {
        return 0;
    }
    // SAFETY: reads `4 * groups <= xq.len()` bytes from `xq` (unaligned word loads are allowed
    // on Armv7E-M and Armv8-M Mainline) and writes `2 * groups <= out.len()` words to `out`
    // (4-byte aligned, as `STRD` needs). Changed registers are declared; flags may be clobbered.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {t0}, [{x}], #4",
            "sxtb16 {t1}, {t0}",
            "sxtb16 {t0}, {t0}, ror #8",
            "strd {t1}, {t0}, [{o}], #8",
            "subs {n}, {n}, #1",
            "bne 2b",
            x = inout(reg) xq.as_ptr() => _,
            o = inout(reg) out.as_mut_ptr() => _,
            n = inout(reg) groups => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            options(nostack),
        );
    }
    2 * groups
}
