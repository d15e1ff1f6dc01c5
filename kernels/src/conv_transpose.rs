//! The transposed 2-D convolution as the adjoint of a convolution: no kernel of its own.
//!
//! `conv_transpose2d(x, W)` with `W: (C_in, C_out, kh, kw)`, stride `s` and padding `p` is the
//! data gradient of the convolution that maps the large `C_out x OH x OW` grid to the small
//! `C_in x H x W` one with the same `W` read as `(O = C_in, C = C_out, kh, kw)`. So its forward
//! is that convolution's `BackwardData` pass (GEMM + col2im), its input gradient is its
//! `Forward` pass (im2col + GEMM) and its weight gradient is `BackwardWeight` with the roles of
//! input and output swapped. candle's CPU version is a direct loop; this is GEMM throughout.
//!
//! Only `output_padding = 0` is supported (the generators' `k4 s2 p1` doubling needs no more).

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv::{bias_grad, grad_of, Pass, PassKind};
use super::im2col::ConvGeom;

/// `conv_transpose2d(x, w)` with per-axis padding, differentiable in both operands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvTranspose2d {
    pub stride: usize,
    pub pad: (usize, usize),
}

impl ConvTranspose2d {
    /// The geometry of the convolution this op is the adjoint of.
    fn geom(&self, x: &[usize], w: &[usize]) -> Result<ConvGeom> {
        let (&[n, c_in, h, wd], &[c_in_w, c_out, kh, kw]) = (x, w) else {
            bail!("conv_transpose2d: expected 4-d input and weight, got {x:?} and {w:?}");
        };
        if c_in != c_in_w {
            bail!("conv_transpose2d: input has {c_in} channels but the weight expects {c_in_w}");
        }
        let (ph, pw) = self.pad;
        let s = self.stride;
        let (full_h, full_w) = (h.saturating_sub(1) * s + kh, wd.saturating_sub(1) * s + kw);
        if h == 0 || wd == 0 || full_h < 2 * ph || full_w < 2 * pw {
            bail!("conv_transpose2d: padding ({ph}, {pw}) leaves no output for a {h}x{wd} input and {kh}x{kw} kernel");
        }
        let g = ConvGeom::new(
            (n, c_out, full_h - 2 * ph, full_w - 2 * pw),
            (c_in, kh, kw),
            s,
            (ph, pw),
        )?;
        debug_assert_eq!((g.oh, g.ow), (h, wd));
        Ok(g)
    }
}

impl ConvTranspose2d {
    fn pass(&self, kind: PassKind, x: &[usize], w: &[usize]) -> Result<Pass> {
        Ok(Pass {
            kind,
            geom: self.geom(x, w)?,
        })
    }

    /// `(dx, dw)`, each one pass, each only for an operand on the graph ([`grad_of`]).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let pass = |kind| self.pass(kind, x.dims(), w.dims());
        Ok((
            grad_of(x, || dy.apply_op2_no_bwd(w, &pass(PassKind::Forward)?))?,
            grad_of(w, || {
                dy.apply_op2_no_bwd(x, &pass(PassKind::BackwardWeight)?)
            })?,
        ))
    }
}

impl CustomOp2 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "fast-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.pass(PassKind::BackwardData, l1.dims(), l2.dims())?
            .dispatch((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, &dy.contiguous()?)
    }
}

/// `conv_transpose2d(x, w) + b`, the bias the starting value of the col2im accumulation.
impl CustomOp3 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "fast-conv-transpose2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.pass(PassKind::BackwardData, l1.dims(), l2.dims())?
            .dispatch((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (dx, dw) = self.grads(x, w, &dy)?;
        Ok((dx, dw, bias_grad(b, &dy)?))
    }
}
