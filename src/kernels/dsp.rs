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

/// One 4-column group of a panel: r0 = weights, r1 = expanded activation, r4..r7 = the four
/// rows' accumulators, r3 = scratch, r8..r11 = weight words, r12/lr = activation words.
macro_rules! group {
    () => {
        "ldrd r12, lr, [r1], #8
         ldm r0!, {{r8, r9, r10, r11}}
         sxtb16 r3, r8
         smlad r4, r3, r12, r4
         sxtb16 r8, r8, ror #8
         smlad r4, r8, lr, r4
         sxtb16 r3, r9
         smlad r5, r3, r12, r5
         sxtb16 r9, r9, ror #8
         smlad r5, r9, lr, r5
         sxtb16 r3, r10
         smlad r6, r3, r12, r6
         sxtb16 r10, r10, ror #8
         smlad r6, r10, lr, r6
         sxtb16 r3, r11
         smlad r7, r3, r12, r7
         sxtb16 r11, r11, ror #8
         smlad r7, r11, lr, r7"
    };
}

/// Dot products of the four rows of one panel body (`groups` groups of 16 bytes at `w`) with the
/// expanded activation at `xe` (`2 * groups` words), stored into `acc[0..4]`.
///
/// The main loop runs four groups per iteration, then a loop over the remaining 0-3 groups.
/// AAPCS: r0 = w, r1 = xe, r2 = groups, r3 = acc; r4-r11 and lr are saved on the stack.
///
/// # Safety
/// `w` must be 4-byte aligned with `16 * groups` readable bytes, `xe` must have `2 * groups`
/// readable words (4-byte aligned), and `acc` must point to four writable, aligned `i32`.
#[unsafe(naked)]
unsafe extern "C" fn panel4_dots(w: *const i8, xe: *const u32, groups: usize, acc: *mut [i32; 4]) {
    core::arch::naked_asm!(
        "push {{r1-r11, lr}}",
        "movs r4, #0",
        "movs r5, #0",
        "movs r6, #0",
        "movs r7, #0",
        "lsrs r2, r2, #2",
        "beq 3f",
        "2:",
        group!(),
        group!(),
        group!(),
        group!(),
        "subs r2, r2, #1",
        "bne 2b",
        "3:",
        "ldr r2, [sp, #4]",
        "ands r2, r2, #3",
        "beq 5f",
        "4:",
        group!(),
        "subs r2, r2, #1",
        "bne 4b",
        "5:",
        "ldr r3, [sp, #8]",
        "stm r3, {{r4, r5, r6, r7}}",
        "pop {{r1-r11, pc}}",
    )
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
        let mut acc = [0i32; PANEL_ROWS];
        // SAFETY: `body` holds exactly `16 * groups` bytes and starts 4-byte aligned (`w` is
        // aligned and every panel is `4 * cols` bytes long); `xe` holds exactly `2 * groups`
        // words; `acc` is a local `[i32; 4]`. The routine only reads those ranges, writes `acc`,
        // and restores every callee-saved register (AAPCS).
        unsafe { panel4_dots(body.as_ptr(), xe.as_ptr(), groups, &mut acc) };
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
        sink(full * PANEL_ROWS + i, dot_i8(row, xq));
    }
}
