//! Int8 matrix-vector kernel for Armv6-M (Cortex-M0/M0+/M1: Thumb-1, no DSP extension, only
//! `MULS` with a 32-bit result), in stable `core::arch` assembly. Compiled when the build script
//! sets `picoformer_v6m` (see `build.rs`).
//!
//! Extracting the four signed bytes of a weight word one by one costs six instructions on this
//! core (`SXTB`, `ASRS #24`, and `LSLS` + `ASRS` for the two middle bytes). Instead, each row's
//! word `W` (four columns) is flipped to offset binary, `W' = W ^ 0x0080_8080` (bytes 0..2 become
//! `b + 128` in 0..255, byte 3 stays signed), whose base-256 digits are then read off by
//! arithmetic shifts: with `M0 = W'`, `M1 = W' >> 8`, `M2 = W' >> 16`, `M3 = W' >> 24`,
//!
//! ```text
//! digit k = M_k - 256 M_{k+1}, so  sum_k digit_k x_k = M0 c0 + M1 c1 + M2 c2 + M3 c3
//! with c0 = x0, c1 = x1 - 256 x0, c2 = x2 - 256 x1, c3 = x3 - 256 x2
//! ```
//!
//! (exact in wrapping i32 arithmetic). The `c_k` depend only on the activation, so they are
//! computed once per vector ([`expand_activation`]: two halfwords per word, the size of the DSP
//! kernel's expansion). Per row and group of four columns that is one `LDR`, one `EORS`, three
//! `ASRS`, four `MULS` and four `ADD` (13 instructions for 4 multiply-accumulates); per group the
//! four coefficients are loaded once for the four rows of a panel (`LDM` + 4 to unpack + 2 to
//! keep the pointer in a high register). The offsets add `128 (x0 + x1 + x2)` per group to every
//! row, which the accumulators start from minus. Integer results are exact, identical to the
//! portable kernels' (checked on the emulated micro:bit by the firmware's `!selftest`).

use super::dequant::{XScale, NORMALIZE};
use super::dot_i8;
use super::panel::{panel_dots_portable, GROUP_COLS, PANEL_ROWS};

/// What [`expand_activation`] writes per group of four values: two words.
const WORDS_PER_GROUP: usize = 2;

/// Bytes of code of one `group!` (59 16-bit instructions): the computed jump into the unrolled
/// loop skips whole groups (the assembler checks the size).
const GROUP_CODE_BYTES: usize = 118;

/// Groups per iteration of the unrolled loop.
const UNROLL: usize = 4;

/// One row of a group: r0 = weights, r1..r4 = c0..c3, r7 = 0x0080_8080, r5/r6 = scratch, `$acc`
/// = the row's accumulator (a high register).
#[rustfmt::skip]
macro_rules! row {
    ($off:literal, $acc:literal) => {
        concat!(
            "ldr r5, [r0, #", $off, "]\n",
            "eors r5, r7\n",
            "asrs r6, r5, #24\n",
            "muls r6, r4, r6\n",
            "add ", $acc, ", r6\n",
            "asrs r6, r5, #16\n",
            "muls r6, r3, r6\n",
            "add ", $acc, ", r6\n",
            "asrs r6, r5, #8\n",
            "muls r6, r2, r6\n",
            "add ", $acc, ", r6\n",
            "muls r5, r1, r5\n",
            "add ", $acc, ", r5\n",
        )
    };
}

/// One group of four columns of the four rows (16 multiply-accumulates): loads and unpacks the
/// group's coefficients (pointer in lr), then the four rows at byte offsets `$o + 0/4/8/12`.
macro_rules! group {
    ($o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
        concat!(
            "mov r6, lr\n",
            "ldm r6!, {{r1, r3}}\n",
            "mov lr, r6\n",
            "asrs r2, r1, #16\n",
            "sxth r1, r1\n",
            "asrs r4, r3, #16\n",
            "sxth r3, r3\n",
            row!($o0, "r8"),
            row!($o1, "r9"),
            row!($o2, "r10"),
            row!($o3, "r11"),
        )
    };
}

/// What the assembly reads per call (and updates: `out`), at fixed offsets.
#[repr(C)]
struct Job {
    /// 0: the expanded activation.
    xe: *const u32,
    /// 4: bytes from the (adjusted) panel start to the end of its groups.
    end: usize,
    /// 8: bytes of code the computed jump skips (whole groups).
    entry: usize,
    /// 12: the accumulators' start value, `-128 * sum(x0 + x1 + x2)` over the groups.
    init: i32,
    /// 16: where the next panel's four dot products go.
    out: *mut i32,
    /// 20: `out` after the last panel.
    out_end: *mut i32,
    /// 24: added to the weights pointer between panels (wrapping).
    step: usize,
    /// 28: the byte flip, `0x0080_8080`.
    flip: u32,
}

/// Exact i32 dot products of the four rows of every full panel (`panels` of them) with the
/// activation, four per panel, into `out`.
///
/// # Safety
/// `groups >= 1`; `w` is 4-byte aligned and holds `panels` panels of `4 * cols` bytes whose first
/// `16 * groups` bytes are the groups (`cols >= 4 * groups`); `xe` holds `2 * groups` words;
/// `out` has room for `4 * panels` i32; `panels >= 1`.
unsafe fn panels_dots(
    w: *const i8,
    cols: usize,
    groups: usize,
    panels: usize,
    xe: *const u32,
    init: i32,
    out: *mut i32,
) {
    let skip = (UNROLL - groups % UNROLL) % UNROLL;
    let body = GROUP_COLS * PANEL_ROWS * groups;
    let back = GROUP_COLS * PANEL_ROWS * skip;
    let mut job = Job {
        xe,
        end: body + back,
        entry: GROUP_CODE_BYTES * skip,
        init,
        out,
        out_end: out.wrapping_add(PANEL_ROWS * panels),
        step: (PANEL_ROWS * cols - body).wrapping_sub(back),
        flip: 0x0080_8080,
    };
    // SAFETY (of the block, given the caller's contract): the weights pointer starts `back`
    // bytes before the first panel, so that the computed jump, which skips the first `skip`
    // groups of the unrolled loop, reads group 0 of the panel first; every load then falls
    // inside a panel's groups (`16 * groups` bytes from each panel start, panels `4 * cols`
    // apart), `2 * groups` words of `xe` per panel, and the four i32 per panel written stay
    // within `out .. out_end`. The block pushes 12 bytes below the stack pointer and pops them
    // (r6 and r7, LLVM's base and frame pointers, which cannot be operands, are restored);
    // every other register it changes is declared. It reads and writes `job` (`out`).
    unsafe {
        core::arch::asm!(
            "push {{r1, r6, r7}}",
            "ldr r7, [r1, #28]",
            "mov r5, r1",
            // Per panel: accumulators, coefficient pointer, end of the groups, computed jump.
            "1:",
            "ldr r6, [r5, #12]",
            "mov r8, r6",
            "mov r9, r6",
            "mov r10, r6",
            "mov r11, r6",
            "ldr r6, [r5, #0]",
            "mov lr, r6",
            "ldr r6, [r5, #4]",
            "adds r6, r6, r0",
            "mov r12, r6",
            "ldr r6, [r5, #8]",
            // PC reads as this instruction's address + 4: label 2.
            "add pc, r6",
            "nop",
            "2:",
            group!(0, 4, 8, 12),
            "21:",
            group!(16, 20, 24, 28),
            "22:",
            group!(32, 36, 40, 44),
            group!(48, 52, 56, 60),
            // The computed jump counts on this size of a group (GROUP_CODE_BYTES).
            ".if (22b - 21b) != 118",
            ".error \"a group is not 118 bytes of code\"",
            ".endif",
            "adds r0, #64",
            "cmp r0, r12",
            "beq 3f",
            "b 2b",
            // Store the panel's four sums, step to the next panel.
            "3:",
            "ldr r5, [sp]",
            "ldr r6, [r5, #16]",
            "mov r1, r8",
            "mov r2, r9",
            "mov r3, r10",
            "mov r4, r11",
            "stm r6!, {{r1, r2, r3, r4}}",
            "str r6, [r5, #16]",
            "ldr r1, [r5, #24]",
            "adds r0, r0, r1",
            "ldr r1, [r5, #20]",
            "cmp r6, r1",
            "beq 4f",
            "b 1b",
            "4:",
            "pop {{r1, r6, r7}}",
            inout("r0") w.wrapping_sub(back) => _,
            inout("r1") &mut job as *mut Job => _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
}

/// The accumulators' start value: minus the offsets the byte flip adds to every row,
/// `-128 * sum over groups of (x0 + x1 + x2)` (wrapping, like the kernel's sums).
fn offset_correction(xq: &[i8]) -> i32 {
    let (groups, _) = xq.as_chunks::<GROUP_COLS>();
    let sum = groups.iter().fold(0i32, |s, &[a, b, c, _]| {
        s.wrapping_add(i32::from(a) + i32::from(b) + i32::from(c))
    });
    sum.wrapping_mul(-128)
}

/// Checks the arguments of [`panels_dots`]: `Some(groups)` when the assembly may run on `w`
/// (4-byte aligned, at least one group, `xe` long enough).
fn usable(w: &[i8], xq: &[i8], xe: &[u32]) -> Option<usize> {
    let groups = xq.len() / GROUP_COLS;
    let ok = groups > 0 && xe.len() >= WORDS_PER_GROUP * groups && (w.as_ptr() as usize).is_multiple_of(4);
    ok.then_some(groups)
}

/// Exact i32 dot products of every row of the panel-layout matrix `w` with `xq` (`xe` = `xq`
/// expanded by [`expand_activation`]), into `out` (`w.len() / xq.len()` rows). Falls back to the
/// portable kernel when `xe` is too short (e.g. not expanded), `w` is not 4-byte aligned or `out`
/// is too short.
pub fn panel_dots(w: &[i8], xq: &[i8], xe: &[u32], out: &mut [i32]) {
    let cols = xq.len().max(1);
    let rows = w.len() / cols;
    let full = rows / PANEL_ROWS;
    let portable = |out: &mut [i32]| {
        panel_dots_portable(w, xq, |r, dot| {
            if let Some(o) = out.get_mut(r) {
                *o = dot;
            }
        })
    };
    let (Some(groups), true) = (usable(w, xq, xe), out.len() >= rows) else {
        portable(out);
        return;
    };
    if full > 0 {
        // SAFETY: `groups >= 1`, `w` is 4-byte aligned (checked by `usable`) and holds `full`
        // panels of `4 * cols` bytes, `cols >= 4 * groups`; `xe` holds `2 * groups` words;
        // `out` holds `rows >= 4 * full` i32.
        unsafe {
            panels_dots(
                w.as_ptr(),
                cols,
                groups,
                full,
                xe.as_ptr(),
                offset_correction(xq),
                out.as_mut_ptr(),
            );
        }
    }
    finish_dots(w, xq, groups, full, out);
}

/// The parts of a matrix the assembly leaves: the last `cols % 4` columns of every full panel
/// (added to `out`) and the last `rows % 4` rows (row-major, written to `out`).
#[inline(never)]
fn finish_dots(w: &[i8], xq: &[i8], groups: usize, full: usize, out: &mut [i32]) {
    let cols = xq.len().max(1);
    let xt = xq.get(groups * GROUP_COLS..).unwrap_or(&[]);
    let panel_bytes = PANEL_ROWS * cols;
    if !xt.is_empty() {
        let (out4, _) = out.as_chunks_mut::<PANEL_ROWS>();
        for (panel, acc) in w.chunks_exact(panel_bytes).zip(out4.iter_mut()).take(full) {
            let tail = panel.get(groups * GROUP_COLS * PANEL_ROWS..).unwrap_or(&[]);
            for (a, wr) in acc.iter_mut().zip(tail.chunks_exact(xt.len())) {
                *a = a.wrapping_add(dot_i8(wr, xt));
            }
        }
    }
    let rest = w.get(full * panel_bytes..).unwrap_or(&[]);
    let out_rest = out.get_mut(full * PANEL_ROWS..).unwrap_or(&mut []);
    for (o, row) in out_rest.iter_mut().zip(rest.chunks_exact(cols)) {
        *o = dot_i8(row, xq);
    }
}

/// Rounds a product's upper word `$u` (lowest bit sticky) to 24 bits, nearest even, as
/// `dequant::round_product` (bumping the exponent `$e` if the product is 2^47 or more), then
/// leaves for the float expression (`$slow`, a label reference) unless `$e` passes
/// `dequant::normal`. `$t` is scratch.
#[rustfmt::skip]
macro_rules! round_product {
    ($u:literal, $e:literal, $t:literal, $slow:literal) => {
        concat!(
            "cmp ", $u, ", #0\n",
            "bpl 2f\n",
            "movs ", $t, ", #1\n",
            "ands ", $t, ", ", $u, "\n",
            "lsrs ", $u, ", ", $u, ", #1\n",
            "orrs ", $u, ", ", $t, "\n",
            "adds ", $e, ", #1\n",
            "2:\n",
            "lsls ", $t, ", ", $u, ", #24\n",
            "lsrs ", $t, ", ", $t, ", #31\n",
            "adds ", $u, ", ", $u, ", ", $t, "\n",
            "adds ", $u, ", #63\n",
            "lsrs ", $u, ", ", $u, ", #7\n",
            "subs ", $t, ", ", $e, ", #1\n",
            "cmp ", $t, ", #252\n",
            "bhi ", $slow, "\n",
        )
    };
}

/// One step of the normalization of r0 (exponent r3, scratch r1): shifts left by `$shift` if r0
/// is below `2^$below`.
#[rustfmt::skip]
macro_rules! norm_step {
    ($below:literal, $shift:literal) => {
        concat!(
            "lsrs r1, r0, #", $below, "\n",
            "bne 4f\n",
            "lsls r0, r0, #", $shift, "\n",
            "subs r3, #", $shift, "\n",
            "4:\n",
        )
    };
}

/// The fast path of `dequant::fast` for one row, step for step, in Thumb-1: r0 = the dot
/// product, r1 = `scale` (bits), r6 = the row's `y`, r7 = [`Rows`] (its `bias` at r6 + the
/// `bias` delta), r8 = 2^29, r10 = `x_scale`'s `sig7`, r11 = its exponent - 127. Ends at label 10
/// with the result's bits in r0, or jumps to label 9 where the float expression is needed; its
/// rare branches are in [`dequant_cold`] (labels 31, 8). Changes r0-r5, r9, r12 and lr.
macro_rules! dequant_body {
    () => {
        concat!(
            "mov r9, r0\n",
            // p = scale * x_scale = (2^23 + fh 2^12 + fl)(hi 2^12 + lo): its upper word in r4,
            // exponent r3, sign of dot * scale in lr (bit 31).
            "lsls r3, r1, #1\n",
            "lsrs r3, r3, #24\n",
            "subs r5, r3, #1\n",
            "cmp r5, #253\n",
            "bhi 91f\n",
            "add r3, r11\n",
            "mov r5, r0\n",
            "eors r5, r1\n",
            "mov lr, r5\n",
            "lsls r4, r1, #9\n",
            "lsrs r4, r4, #21\n",
            "lsls r1, r1, #20\n",
            "lsrs r1, r1, #20\n",
            "ldr r5, [r7, #4]\n",
            "mov r2, r4\n",
            "muls r2, r5, r2\n",
            "ldr r0, [r7, #0]\n",
            "muls r4, r0, r4\n",
            "muls r0, r1, r0\n",
            "muls r1, r5, r1\n",
            "adds r2, r2, r0\n",
            "lsls r0, r2, #28\n",
            "lsrs r0, r0, #16\n",
            "adds r1, r1, r0\n",
            "lsrs r2, r2, #4\n",
            "lsls r4, r4, #8\n",
            "adds r4, r4, r2\n",
            "lsrs r0, r1, #16\n",
            "adds r4, r4, r0\n",
            "add r4, r10\n",
            "lsls r1, r1, #16\n",
            "beq 1f\n",
            "movs r0, #1\n",
            "orrs r4, r0\n",
            "1:\n",
            round_product!("r4", "r3", "r0", "91f"),
            // (Conditional branches reach 256 bytes: a relay to the exit.)
            "b 1f\n",
            "91:\n",
            "b 9f\n",
            "1:\n",
            // q = dot * p: |dot| normalized to [2^23, 2^24) in r0, exponent ep + 23 - shift.
            "mov r0, r9\n",
            "asrs r1, r0, #31\n",
            "eors r0, r1\n",
            "subs r0, r0, r1\n",
            "beq 91b\n",
            "lsrs r1, r0, #24\n",
            "bne 91b\n",
            "adds r3, #23\n",
            norm_step!(8, 16),
            norm_step!(16, 8),
            "lsrs r1, r0, #16\n",
            "ldr r2, [r7, #28]\n",
            "ldrb r1, [r2, r1]\n",
            "lsls r0, r1\n",
            "subs r3, r3, r1\n",
            "lsrs r1, r0, #12\n",
            "lsls r0, r0, #20\n",
            "lsrs r0, r0, #20\n",
            "lsrs r2, r4, #12\n",
            "lsls r4, r4, #20\n",
            "lsrs r4, r4, #20\n",
            "mov r5, r1\n",
            "muls r5, r4, r5\n",
            "muls r1, r2, r1\n",
            "muls r2, r0, r2\n",
            "muls r0, r4, r0\n",
            "adds r5, r5, r2\n",
            "lsls r2, r5, #28\n",
            "lsrs r2, r2, #16\n",
            "adds r0, r0, r2\n",
            "lsrs r5, r5, #4\n",
            "lsls r1, r1, #8\n",
            "adds r1, r1, r5\n",
            "lsrs r2, r0, #16\n",
            "adds r1, r1, r2\n",
            "lsls r0, r0, #16\n",
            "beq 1f\n",
            "movs r2, #1\n",
            "orrs r1, r2\n",
            "1:\n",
            round_product!("r1", "r3", "r2", "9f"),
            "lsrs r2, r1, #24\n",
            "beq 1f\n",
            "lsrs r1, r1, #1\n",
            "adds r3, #1\n",
            "subs r2, r3, #1\n",
            "cmp r2, #252\n",
            "bhi 9f\n",
            "1:\n",
            // y = q + bias, q = (sign lr, exponent r3, significand r1).
            "ldr r5, [r7, #20]\n",
            "ldr r2, [r6, r5]\n",
            "lsls r4, r2, #1\n",
            "lsrs r4, r4, #24\n",
            "bne 5f\n",
            // Zero bias: y = q; subnormal: float expression.
            "lsls r4, r2, #9\n",
            "bne 9f\n",
            "subs r0, r3, #1\n",
            "mov r5, lr\n",
            "b 7f\n",
            "5:\n",
            "cmp r4, #255\n",
            "beq 9f\n",
            "lsls r5, r2, #9\n",
            "lsrs r5, r5, #3\n",
            "mov r0, r8\n",
            "orrs r5, r0\n",
            "lsls r1, r1, #6\n",
            "mov r0, lr\n",
            "eors r0, r2\n",
            "mov r12, r0\n",
            // a (r1, exponent r3, sign lr) = the larger magnitude, c (r4) the smaller, r0 = the
            // exponent difference.
            "cmp r3, r4\n",
            "bgt 6f\n",
            "blt 5f\n",
            "cmp r1, r5\n",
            "bhs 6f\n",
            "5:\n",
            "subs r0, r4, r3\n",
            "mov r3, r4\n",
            "mov r4, r1\n",
            "mov r1, r5\n",
            "mov lr, r2\n",
            "b 5f\n",
            "6:\n",
            "subs r0, r3, r4\n",
            "mov r4, r5\n",
            "5:\n",
            // c >> d: only zero guard bits go up to d = 6 (more: jam, out of line).
            "cmp r0, #6\n",
            "bhi 31f\n",
            "lsrs r4, r0\n",
            "32:\n",
            "mov r0, r12\n",
            "cmp r0, #0\n",
            "bmi 6f\n",
            "adds r1, r1, r4\n",
            "lsrs r0, r1, #30\n",
            "beq 5f\n",
            "movs r0, #1\n",
            "ands r0, r1\n",
            "lsrs r1, r1, #1\n",
            "orrs r1, r0\n",
            "adds r3, #1\n",
            "b 5f\n",
            "6:\n",
            "subs r1, r1, r4\n",
            "beq 8f\n",
            "6:\n",
            "lsrs r0, r1, #29\n",
            "bne 5f\n",
            "lsls r1, r1, #1\n",
            "subs r3, #1\n",
            "b 6b\n",
            "5:\n",
            "subs r0, r3, #1\n",
            "cmp r0, #252\n",
            "bhi 9f\n",
            // Round at bit 6; a carry out lands in the exponent field.
            "lsls r2, r1, #25\n",
            "lsrs r2, r2, #31\n",
            "adds r1, r1, r2\n",
            "adds r1, #31\n",
            "lsrs r1, r1, #6\n",
            "mov r5, lr\n",
            // Pack: sign r5 (bit 31), exponent - 1 in r0, significand r1.
            "7:\n",
            "lsls r0, r0, #23\n",
            "adds r0, r0, r1\n",
            "lsrs r5, r5, #31\n",
            "lsls r5, r5, #31\n",
            "orrs r0, r5\n",
            "10:\n",
        )
    };
}

/// The rare branches of [`dequant_body`], placed after the loop: the alignment shift with jam
/// (label 31, back to 32) and an exact zero sum (label 8, back to 10).
macro_rules! dequant_cold {
    () => {
        concat!(
            "31:\n",
            "cmp r0, #31\n",
            "bhs 33f\n",
            "mov r5, r4\n",
            "lsrs r4, r0\n",
            "movs r2, #32\n",
            "subs r2, r2, r0\n",
            "lsls r5, r2\n",
            "beq 32b\n",
            "movs r2, #1\n",
            "orrs r4, r2\n",
            "b 32b\n",
            "33:\n",
            "movs r4, #1\n",
            "b 32b\n",
            "8:\n",
            "movs r0, #0\n",
            "b 10b\n",
        )
    };
}

/// Where [`dequant_rows`]'s assembly finds `x_scale`'s constants (first, at r7) and the rows.
#[repr(C)]
struct Rows {
    /// 0..16: the constants of `x_scale`.
    k: XScale,
    /// 16: bytes from a row's `y` to its scale (wrapping).
    scales: usize,
    /// 20: bytes from a row's `y` to its bias (wrapping).
    bias: usize,
    /// 24: the end of `y` (whose rows hold the dot products as i32 bits, replaced by results).
    end: *mut f32,
    /// 28: `dequant::NORMALIZE`.
    normalize: *const u8,
}

/// `dot as f32 * (scale * x_scale) + bias` for the rows of `y` (the dot products as i32 bits),
/// `scales` and `bias` (as many as `y`): the assembly fast path (see `kernels::dequant`; it is
/// checked against the float expression by the firmware's `!selftest`), the float expression
/// for `x_scale` that are not positive normal numbers, and for the rows the fast path leaves.
#[inline(never)]
fn dequant_rows(y: &mut [f32], scales: &[f32], bias: &[f32], x_scale: f32) {
    let n = y.len().min(scales.len()).min(bias.len());
    let Some(k) = XScale::new(x_scale) else {
        for ((yi, &s), &b) in y.iter_mut().zip(scales).zip(bias) {
            *yi = (yi.to_bits() as i32) as f32 * (s * x_scale) + b;
        }
        return;
    };
    let y0 = y.as_mut_ptr();
    let rows = Rows {
        k,
        scales: (scales.as_ptr() as usize).wrapping_sub(y0 as usize),
        bias: (bias.as_ptr() as usize).wrapping_sub(y0 as usize),
        end: y0.wrapping_add(n),
        normalize: NORMALIZE.as_ptr(),
    };
    let mut at = 0;
    while at < n {
        let stop: *mut f32;
        // SAFETY (of the block): reads `rows`, `NORMALIZE` and, for the rows `at .. n`, the words
        // of `y`, `scales` and `bias` of the row (all hold `n` f32; the deltas in `rows` lead
        // from a row's `y` to its scale and bias); writes the rows' `y` only; pushes and pops 8
        // bytes (r6 and r7, which cannot be operands, are restored); every other register it
        // changes is declared. It stops at the row that needs the float expression, or at `n`,
        // and returns that row's `y` pointer.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov r7, r0",
                "mov r6, r1",
                "ldr r5, [r7, #8]",
                "mov r10, r5",
                "ldr r5, [r7, #12]",
                "subs r5, #127",
                "mov r11, r5",
                "movs r5, #1",
                "lsls r5, r5, #29",
                "mov r8, r5",
                "20:",
                "ldr r0, [r6]",
                "ldr r5, [r7, #16]",
                "ldr r1, [r6, r5]",
                dequant_body!(),
                "stm r6!, {{r0}}",
                "ldr r5, [r7, #24]",
                "cmp r6, r5",
                "beq 9f",
                "b 20b",
                dequant_cold!(),
                "9:",
                "mov r0, r6",
                "pop {{r6, r7}}",
                inout("r0") &rows as *const Rows => stop,
                inout("r1") y0.wrapping_add(at) => _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            );
        }
        // The row at `stop`, if any, needs the float expression.
        at = (stop as usize).wrapping_sub(y0 as usize) / 4;
        if let (Some(yi), Some(&s), Some(&b)) = (y.get_mut(at), scales.get(at), bias.get(at)) {
            *yi = (yi.to_bits() as i32) as f32 * (s * x_scale) + b;
        }
        at += 1;
    }
}

/// `dot as f32 * (scale * x_scale) + bias` by the assembly fast path (see `kernels::dequant`).
pub fn dequant(dot: i32, scale: f32, x_scale: f32, bias: f32) -> f32 {
    let mut y = [f32::from_bits(dot as u32)];
    dequant_rows(&mut y, &[scale], &[bias], x_scale);
    let [y] = y;
    y
}

/// `y = dequant(Wq xq) + bias` for a panel-layout matrix: the assembly writes the dot products of
/// the full panels into `y` (as i32 bits), then each row is dequantized in place. Bit-identical to
/// `panel::matvec_i8_panels_portable`.
pub fn matvec_panels(w: &[i8], scales: &[f32], xq: &[i8], xe: &[u32], x_scale: f32, bias: &[f32], y: &mut [f32]) {
    let cols = xq.len().max(1);
    let rows = y.len();
    let full = rows / PANEL_ROWS;
    let fits = w.len() >= rows * cols && scales.len() >= rows && bias.len() >= rows;
    let (Some(groups), true, true) = (usable(w, xq, xe), fits, full > 0) else {
        super::panel::matvec_i8_panels_portable(w, scales, xq, x_scale, bias, y);
        return;
    };
    // SAFETY: `groups >= 1`, `w` is 4-byte aligned (checked by `usable`) and holds `full >= 1`
    // panels of `4 * cols` bytes (`w.len() >= rows * cols`), `cols >= 4 * groups`; `xe` holds
    // `2 * groups` words; `y` holds `rows >= 4 * full` f32, the size and alignment of i32.
    unsafe {
        panels_dots(
            w.as_ptr(),
            cols,
            groups,
            full,
            xe.as_ptr(),
            offset_correction(xq),
            y.as_mut_ptr().cast::<i32>(),
        );
    }
    let done = full * PANEL_ROWS;
    let xt = xq.get(groups * GROUP_COLS..).unwrap_or(&[]);
    if !xt.is_empty() {
        let (y4, _) = y.as_chunks_mut::<PANEL_ROWS>();
        for (panel, yc) in w.chunks_exact(PANEL_ROWS * cols).zip(y4.iter_mut()).take(full) {
            let tail = panel.get(groups * GROUP_COLS * PANEL_ROWS..).unwrap_or(&[]);
            for (yi, wr) in yc.iter_mut().zip(tail.chunks_exact(xt.len())) {
                *yi = f32::from_bits((yi.to_bits() as i32).wrapping_add(dot_i8(wr, xt)) as u32);
            }
        }
    }
    let rest = w.get(done * cols..).unwrap_or(&[]);
    let out_rest = y.get_mut(done..).unwrap_or(&mut []);
    for (yi, row) in out_rest.iter_mut().zip(rest.chunks_exact(cols)) {
        *yi = f32::from_bits(dot_i8(row, xq) as u32);
    }
    dequant_rows(y, scales, bias, x_scale);
}

/// [`expand_activation_portable`] in assembly, for a 4-byte aligned `xq` (the engine's always
/// is; otherwise the portable code runs): per group one `LDM`, four sign extensions, and each
/// coefficient as `(x_k << 16) - (x_(k-1) << 24)`, whose `SUBS` overflows exactly when it does
/// not fit an i16. Returns the words written, 0 if a coefficient does not fit.
pub fn expand_activation(xq: &[i8], out: &mut [u32]) -> usize {
    let groups = (xq.len() / GROUP_COLS).min(out.len() / WORDS_PER_GROUP);
    if groups == 0 || !(xq.as_ptr() as usize).is_multiple_of(4) {
        return expand_activation_portable(xq, out);
    }
    let left: usize;
    // SAFETY: reads `4 * groups <= xq.len()` bytes of `xq` (4-byte aligned, as `LDM` needs)
    // and writes `2 * groups <= out.len()` words to `out` (aligned); pushes and pops 8 bytes
    // (r6 and r7, which cannot be operands, are restored); every other register it changes is
    // declared.
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "2:",
            "ldm r0!, {{r7}}",
            "sxtb r3, r7",
            "lsrs r4, r7, #8",
            "sxtb r4, r4",
            "lsrs r5, r7, #16",
            "sxtb r5, r5",
            "asrs r7, r7, #24",
            // c3 << 16 (r7), c2 << 16 (r5), c1 << 16 (r4).
            "lsls r7, r7, #16",
            "lsls r6, r5, #24",
            "subs r7, r7, r6",
            "bvs 3f",
            "lsls r5, r5, #16",
            "lsls r6, r4, #24",
            "subs r5, r5, r6",
            "bvs 3f",
            "lsls r4, r4, #16",
            "lsls r6, r3, #24",
            "subs r4, r4, r6",
            "bvs 3f",
            "uxth r3, r3",
            "orrs r3, r4",
            "lsrs r5, r5, #16",
            "orrs r5, r7",
            "stm r1!, {{r3, r5}}",
            "subs r2, #1",
            "bne 2b",
            "3:",
            "pop {{r6, r7}}",
            inout("r0") xq.as_ptr() => _,
            inout("r1") out.as_mut_ptr() => _,
            inout("r2") groups => left,
            out("r3") _,
            out("r4") _,
            out("r5") _,
        );
    }
    if left == 0 {
        WORDS_PER_GROUP * groups
    } else {
        0
    }
}

/// Expands `xq` for the kernel (the reference of [`expand_activation`]): per group of four
/// values `x0..x3`, the words
/// `x0 | (x1 - 256 x0) << 16` and `(x2 - 256 x1) | (x3 - 256 x2) << 16` (i16 halves; see the
/// module doc). Writes `2 * (xq.len() / 4)` words (fewer if `out` is shorter) and returns how
/// many, or 0 when a coefficient does not fit an i16 (an `i8::MIN` among `x0..x2` of a group
/// followed by a value >= 0; never produced by the engine's quantizer, whose range is
/// -127..=127): the kernels then fall back to the portable code.
pub fn expand_activation_portable(xq: &[i8], out: &mut [u32]) -> usize {
    let (groups, _) = xq.as_chunks::<GROUP_COLS>();
    let (pairs, _) = out.as_chunks_mut::<WORDS_PER_GROUP>();
    let mut n = 0;
    let mut wide = 0i32;
    for (&[x0, x1, x2, x3], [o0, o1]) in groups.iter().zip(pairs) {
        let (x0, x1, x2, x3) = (i32::from(x0), i32::from(x1), i32::from(x2), i32::from(x3));
        let (c1, c2, c3) = (x1 - 256 * x0, x2 - 256 * x1, x3 - 256 * x2);
        // Negative when a coefficient needs more than 16 bits (they are >= -32640, so only
        // c > i16::MAX is possible).
        wide |= (0x7fff - c1) | (0x7fff - c2) | (0x7fff - c3);
        *o0 = (x0 as u32 & 0xffff) | (c1 as u32) << 16;
        *o1 = (c2 as u32 & 0xffff) | (c3 as u32) << 16;
        n += WORDS_PER_GROUP;
    }
    if wide < 0 {
        0
    } else {
        n
    }
}
