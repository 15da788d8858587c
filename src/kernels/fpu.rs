//! f32 matrix-vector kernel for hard-float Cortex-M cores (FPv4/FPv5: M4F, M7, M33), compiled when
//! the build script sets `picoformer_fpu`.
//!
//! Two rows per pass: per 8 columns one `VLDM` of the activation (reused by both rows), one
//! `VLDM` of each row's weights and 8 `VMLA` per row, 21 instructions for 16 multiply-adds.
//! `VMLA.F32` on these cores is the *chained* multiply-accumulate (the product is rounded, then
//! added: not fused), so each lane computes exactly what the portable `acc[l] += w * x` computes;
//! lanes, tail and bias are then combined in Rust in the portable order, and the outputs are
//! bit-identical to [`super::matvec_f32`] (tested on the emulated boards by `!selftest`).

use super::{dot_f32, LANES};

/// The 8-lane partial sums of two rows (`w0`, `w1`) against `x`, over `chunks` chunks of 8
/// columns: `acc[0..8]` for `w0`, `acc[8..16]` for `w1` (the portable kernel's lanes).
///
/// # Safety
/// `w0`, `w1` and `x` must each have `8 * chunks` readable f32 (4-byte aligned).
#[inline(always)]
unsafe fn two_rows(w0: *const f32, w1: *const f32, x: *const f32, chunks: usize) -> [f32; 2 * LANES] {
    let mut acc = [0.0f32; 2 * LANES];
    // SAFETY (of the block, given the caller's contract): it reads `8 * chunks` f32 from each of
    // `w0`, `w1` and `x`, and reads and writes the 16 f32 of `acc`, a local array. The
    // registers it changes (s0-s31, the four pointer/counter registers) are all declared as
    // outputs, and it sets only the condition flags, which asm may clobber by default.
    unsafe {
        core::arch::asm!(
            "vldm {acc}, {{s16-s31}}",
            "cmp {n}, #0",
            "beq 3f",
            "2:",
            "vldm {x}!, {{s0-s7}}",
            "vldm {w0}!, {{s8-s15}}",
            "vmla.f32 s16, s8, s0",
            "vmla.f32 s17, s9, s1",
            "vmla.f32 s18, s10, s2",
            "vmla.f32 s19, s11, s3",
            "vmla.f32 s20, s12, s4",
            "vmla.f32 s21, s13, s5",
            "vmla.f32 s22, s14, s6",
            "vmla.f32 s23, s15, s7",
            "vldm {w1}!, {{s8-s15}}",
            "vmla.f32 s24, s8, s0",
            "vmla.f32 s25, s9, s1",
            "vmla.f32 s26, s10, s2",
            "vmla.f32 s27, s11, s3",
            "vmla.f32 s28, s12, s4",
            "vmla.f32 s29, s13, s5",
            "vmla.f32 s30, s14, s6",
            "vmla.f32 s31, s15, s7",
            "subs {n}, {n}, #1",
            "bne 2b",
            "3:",
            "vstm {acc}, {{s16-s31}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x => _,
            w0 = inout(reg) w0 => _,
            w1 = inout(reg) w1 => _,
            n = inout(reg) chunks => _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            out("s28") _, out("s29") _, out("s30") _, out("s31") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack),
        );
    }
    acc
}

/// Combines one row's lanes with its tail exactly as [`dot_f32`] does.
#[inline(always)]
fn finish(lanes: &[f32], row_tail: &[f32], x_tail: &[f32]) -> f32 {
    let tail: f32 = row_tail.iter().zip(x_tail).map(|(x, y)| x * y).sum();
    let [a0, a1, a2, a3, a4, a5, a6, a7] = <[f32; LANES]>::try_from(lanes).unwrap_or([0.0; LANES]);
    (((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))) + tail
}

/// `y = W x + bias`, bit-identical to [`super::matvec_f32`].
#[inline(never)]
pub fn matvec_f32(w: &[f32], x: &[f32], bias: &[f32], y: &mut [f32]) {
    let cols = x.len().max(1);
    let chunks = x.len() / LANES;
    let (_, x_tail) = x.split_at(chunks * LANES);
    let mut rows = w.chunks_exact(cols).zip(bias).zip(y.chunks_mut(1));
    let body = chunks * LANES;
    while let Some(((r0, b0), y0)) = rows.next() {
        let Some(((r1, b1), y1)) = rows.next() else {
            if let Some(v) = y0.first_mut() {
                *v = dot_f32(r0, x) + b0;
            }
            break;
        };
        // SAFETY: `r0` and `r1` are whole rows of `cols >= 8 * chunks` f32 and `x` holds
        // `8 * chunks` f32 or more; slices of f32 are 4-byte aligned.
        let acc = unsafe { two_rows(r0.as_ptr(), r1.as_ptr(), x.as_ptr(), chunks) };
        let (l0, l1) = acc.split_at(LANES);
        if let (Some(v0), Some(v1)) = (y0.first_mut(), y1.first_mut()) {
            *v0 = finish(l0, r0.get(body..).unwrap_or(&[]), x_tail) + b0;
            *v1 = finish(l1, r1.get(body..).unwrap_or(&[]), x_tail) + b1;
        }
    }
}
