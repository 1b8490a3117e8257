//! A small UNet for images: residual blocks with GroupNorm and SiLU, one downsampling level with
//! self-attention, after Ho et al. (2020) and Dhariwal & Nichol (2021), scaled down.
//!
//! ```text
//! conv_in ─ res(c→c) ──────────────────────────────┐ skip0 [c, H, W]
//!   down (stride 2) ─ res(c→2c) ─ attn ──────────┐ │ skip1 [2c, H/2, W/2]
//!     mid: res(2c) ─ attn ─ res(2c)              │ │
//!   cat skip1 ─ res(4c→2c) ─ upsample ×2 ────────┘ │
//! cat skip0 ─ res(3c→c) ─ GroupNorm ─ SiLU ─ conv_out
//! ```

use crate::settings::settings;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor, activation::silu};

use super::embed::CondEmbedding;
use crate::ops::attention::{AttentionOptions, self_attention};
use crate::ops::conv;
use crate::ops::group_norm::{group_norm, group_norm_silu_of};
use crate::ops::linear::linear;

settings! {
    /// Configuration of [`UNet`].
    pub struct UNetConfig {
        /// Channels at full resolution; the lower level has twice as many.
        pub channels: usize = 32, with_channels;
        /// GroupNorm groups (must divide `channels`).
        pub groups: usize = 8, with_groups;
        /// Attention heads at the lower level.
        pub heads: usize = 4, with_heads;
    }
}

impl UNetConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

/// `conv.forward(x)` through the op API (the CPU kernel on Flex).
fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv::conv2d(x, conv)
}

/// GroupNorm then SiLU through the op API (fused on wgpu when not training).
fn norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm_silu_of(x, norm)
}

#[derive(Module, Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    cond: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(cin: usize, cout: usize, emb: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups, cin).init(device),
            conv1: conv(cin, cout, 3, 1, device),
            cond: LinearConfig::new(emb, cout).init(device),
            norm2: GroupNormConfig::new(groups, cout).init(device),
            conv2: conv(cout, cout, 3, 1, device),
            skip: (cin != cout).then(|| conv(cin, cout, 1, 1, device)),
        }
    }

    /// `x`: `[b, cin, h, w]`, `emb`: `[b, emb]` (already SiLU'd); returns `[b, cout, h, w]`.
    fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = conv2d(&self.conv1, norm_silu(&self.norm1, x.clone()));
        let [b, c, _, _] = h.dims();
        let h = h + crate::ops::per_sample::burn_affine(emb, &self.cond).reshape([b, c, 1, 1]);
        let h = conv2d(&self.conv2, norm_silu(&self.norm2, h));
        let skip = match &self.skip {
            Some(s) => conv2d(s, x),
            None => x,
        };
        skip + h
    }
}

#[derive(Module, Debug)]
struct AttnBlock {
    norm: GroupNorm,
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl AttnBlock {
    fn new(c: usize, groups: usize, heads: usize, device: &Device) -> Self {
        assert!(
            c % heads == 0,
            "attention channels {c} must be divisible by heads {heads}"
        );
        Self {
            norm: GroupNormConfig::new(groups, c).init(device),
            qkv: LinearConfig::new(c, 3 * c).init(device),
            proj: LinearConfig::new(c, c).init(device),
            heads,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let t = group_norm(x.clone(), &self.norm)
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [b, l, c]
        // qkv's 3c features are (q | k | v), each heads × d: what `self_attention` reads.
        let o = self_attention(
            linear(t, &self.qkv),
            self.heads,
            AttentionOptions::default(),
        );
        let o = linear(o, &self.proj); // [b, l, c]
        x + o.swap_dims(1, 2).reshape([b, c, h, w])
    }
}

/// The UNet denoiser.
#[derive(Module, Debug)]
pub struct UNet {
    embed: CondEmbedding,
    conv_in: Conv2d,
    res0: ResBlock,
    down: Conv2d,
    res1: ResBlock,
    attn1: AttnBlock,
    mid1: ResBlock,
    mid_attn: AttnBlock,
    mid2: ResBlock,
    up1: ResBlock,
    up_conv: Conv2d,
    up0: ResBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNetConfig {
    /// Builds a UNet for images of `in_channels` channels.
    pub fn init(&self, in_channels: usize, num_classes: Option<usize>, device: &Device) -> UNet {
        let (c, g) = (self.channels, self.groups);
        assert!(
            c % g == 0,
            "UNet channels {c} must be divisible by groups {g}"
        );
        let emb = 4 * c;
        UNet {
            embed: CondEmbedding::new(emb, num_classes, device),
            conv_in: conv(in_channels, c, 3, 1, device),
            res0: ResBlock::new(c, c, emb, g, device),
            down: conv(c, c, 3, 2, device),
            res1: ResBlock::new(c, 2 * c, emb, g, device),
            attn1: AttnBlock::new(2 * c, g, self.heads, device),
            mid1: ResBlock::new(2 * c, 2 * c, emb, g, device),
            mid_attn: AttnBlock::new(2 * c, g, self.heads, device),
            mid2: ResBlock::new(2 * c, 2 * c, emb, g, device),
            up1: ResBlock::new(4 * c, 2 * c, emb, g, device),
            up_conv: conv(2 * c, 2 * c, 3, 1, device),
            up0: ResBlock::new(3 * c, c, emb, g, device),
            norm_out: GroupNormConfig::new(g, c).init(device),
            conv_out: conv(c, in_channels, 3, 1, device),
        }
    }
}

/// Nearest-neighbour ×2 upsampling. `[b, c, h, w]` → `[b, c, 2h, 2w]`.
fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

impl UNet {
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]` with even height and width;
    /// - `t`: `[batch]`, `labels`: `[batch]`; returns the shape of `x`.
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        assert!(
            h % 2 == 0 && w % 2 == 0,
            "UNet needs even image sides, got {h}×{w}"
        );
        let emb = silu(self.embed.forward(t, labels)); // [b, 4c]
        let h0 = self.res0.forward(conv2d(&self.conv_in, x), emb.clone()); // [b, c, H, W]
        let h1 = self.attn1.forward(
            self.res1
                .forward(conv2d(&self.down, h0.clone()), emb.clone()),
        ); // [b, 2c, H/2, W/2]
        let m = self.mid1.forward(h1.clone(), emb.clone());
        let m = self.mid2.forward(self.mid_attn.forward(m), emb.clone());
        let u = self.up1.forward(Tensor::cat(vec![m, h1], 1), emb.clone()); // [b, 2c, H/2, W/2]
        let u = conv2d(&self.up_conv, upsample2(u)); // [b, 2c, H, W]
        let u = self.up0.forward(Tensor::cat(vec![u, h0], 1), emb); // [b, c, H, W]
        conv2d(&self.conv_out, norm_silu(&self.norm_out, u))
    }
}
