// Modulated deformable convolution (DCNv2) on the CPU, on several std::threads.
//
// Built by vsmsvsr/engine/deform.py with g++ into the user cache and called through ctypes on
// tensors' data pointers (no copies). std::thread, not OpenMP: Paddle already loads two OpenMP
// runtimes, and a third one fights them for cores.
//
// Layout (Paddle's deform_conv2d): x (n, c, h, w); offset (n, 2*g*kh*kw, ho, wo) with (dy, dx)
// per tap, taps in row-major order, deformable group major; mask (n, g*kh*kw, ho, wo);
// the columns: row c*kh*kw + tap, as Paddle's im2col. Sampling is bilinear with zeros outside the
// image, and a sample whose position lies at or beyond one pixel outside is zero (as Paddle).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace {

// The whole convolution, one block of kBlock output positions at a time: the block's columns
// (c*taps rows of kBlock values, ~73 KB for PP-MSVSR: they stay in the L2 cache) are sampled, then
// multiplied by the weights into the output. Sampling positions and weights are computed once
// per (group, tap, position) and shared by the group's channels. No (c*taps, ho*wo) buffer: the
// columns never leave the cache.
constexpr int kBlock = 64;

struct ConvJob {
  const float *x, *offset, *mask, *weight, *bias;
  float* out;
  int n, c, h, w, ho, wo, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups, o;
};

void conv_blocks(const ConvJob& j, int64_t begin, int64_t end) {
  const int taps = j.kh * j.kw;
  const int per_group = j.c / j.groups;
  const int rows_count = j.c * taps;
  const int64_t plane = static_cast<int64_t>(j.ho) * j.wo;
  const int64_t blocks = (plane + kBlock - 1) / kBlock;
  std::vector<float> cols(static_cast<size_t>(rows_count) * kBlock);
  int idx[4][kBlock];
  float wt[4][kBlock];
  for (int64_t item = begin; item < end; ++item) {
    const int s = static_cast<int>(item / blocks);
    const int64_t p0 = (item % blocks) * kBlock;
    const int len = static_cast<int>(std::min<int64_t>(kBlock, plane - p0));
    const float* x = j.x + static_cast<int64_t>(s) * j.c * j.h * j.w;
    const float* off = j.offset + static_cast<int64_t>(s) * 2 * j.groups * taps * plane;
    const float* msk = j.mask + static_cast<int64_t>(s) * j.groups * taps * plane;
    for (int g = 0; g < j.groups; ++g) {
      for (int tap = 0; tap < taps; ++tap) {
        const int i = tap / j.kw, k = tap % j.kw;
        const float* dy = off + (static_cast<int64_t>(g) * 2 * taps + 2 * tap) * plane + p0;
        const float* dx = dy + plane;
        const float* m = msk + (static_cast<int64_t>(g) * taps + tap) * plane + p0;
        for (int q = 0; q < len; ++q) {
          const int64_t p = p0 + q;
          const int oy = static_cast<int>(p / j.wo), ox = static_cast<int>(p % j.wo);
          const float y = (oy * j.stride_h - j.pad_h + i * j.dil_h) + dy[q];
          const float xx = (ox * j.stride_w - j.pad_w + k * j.dil_w) + dx[q];
          for (int v = 0; v < 4; ++v) { idx[v][q] = 0; wt[v][q] = 0.f; }
          if (!(y > -1.f && xx > -1.f && y < j.h && xx < j.w)) continue;
          const int y0 = static_cast<int>(std::floor(y)), x0 = static_cast<int>(std::floor(xx));
          const float ly = y - y0, lx = xx - x0, hy = 1.f - ly, hx = 1.f - lx;
          const float mm = m[q];
          // the four neighbours; one outside the image weighs 0 (bilinear with zero padding)
          if (y0 >= 0 && x0 >= 0) { idx[0][q] = y0 * j.w + x0; wt[0][q] = hy * hx * mm; }
          if (y0 >= 0 && x0 + 1 <= j.w - 1) { idx[1][q] = y0 * j.w + x0 + 1; wt[1][q] = hy * lx * mm; }
          if (y0 + 1 <= j.h - 1 && x0 >= 0) { idx[2][q] = (y0 + 1) * j.w + x0; wt[2][q] = ly * hx * mm; }
          if (y0 + 1 <= j.h - 1 && x0 + 1 <= j.w - 1) {
            idx[3][q] = (y0 + 1) * j.w + x0 + 1; wt[3][q] = ly * lx * mm;
          }
        }
        for (int cc = 0; cc < per_group; ++cc) {
          const int ch = g * per_group + cc;
          const float* im = x + static_cast<int64_t>(ch) * j.h * j.w;
          float* col = cols.data() + static_cast<size_t>(ch * taps + tap) * kBlock;
          for (int q = 0; q < len; ++q)
            col[q] = wt[0][q] * im[idx[0][q]] + wt[1][q] * im[idx[1][q]] + wt[2][q] * im[idx[2][q]] +
                     wt[3][q] * im[idx[3][q]];
          for (int q = len; q < kBlock; ++q) col[q] = 0.f;
        }
      }
    }
    // out[o, p0:p0+len] = bias[o] + weight[o, :] . cols[:, 0:len], four output channels at a time
    float* out = j.out + static_cast<int64_t>(s) * j.o * plane + p0;
    int o0 = 0;
    for (; o0 + 4 <= j.o; o0 += 4) {
      float acc[4][kBlock];
      for (int a = 0; a < 4; ++a)
        for (int q = 0; q < kBlock; ++q) acc[a][q] = 0.f;
      const float* w0 = j.weight + static_cast<int64_t>(o0) * rows_count;
      for (int r = 0; r < rows_count; ++r) {
        const float a0 = w0[r], a1 = w0[rows_count + r], a2 = w0[2 * rows_count + r], a3 = w0[3 * rows_count + r];
        const float* __restrict col = cols.data() + static_cast<size_t>(r) * kBlock;
        for (int q = 0; q < kBlock; ++q) {
          acc[0][q] += a0 * col[q];
          acc[1][q] += a1 * col[q];
          acc[2][q] += a2 * col[q];
          acc[3][q] += a3 * col[q];
        }
      }
      for (int a = 0; a < 4; ++a) {
        const float b = j.bias ? j.bias[o0 + a] : 0.f;
        float* dst = out + static_cast<int64_t>(o0 + a) * plane;
        for (int q = 0; q < len; ++q) dst[q] = acc[a][q] + b;
      }
    }
    for (; o0 < j.o; ++o0) {
      float acc[kBlock] = {0.f};
      const float* wr = j.weight + static_cast<int64_t>(o0) * rows_count;
      for (int r = 0; r < rows_count; ++r) {
        const float* col = cols.data() + static_cast<size_t>(r) * kBlock;
        for (int q = 0; q < kBlock; ++q) acc[q] += wr[r] * col[q];
      }
      const float b = j.bias ? j.bias[o0] : 0.f;
      float* dst = out + static_cast<int64_t>(o0) * plane;
      for (int q = 0; q < len; ++q) dst[q] = acc[q] + b;
    }
  }
}

}  // namespace

extern "C" {

int vsmsvsr_deform_conv_version() { return 2; }

// The whole modulated deformable convolution (groups=1): out (n, o, ho, wo) from x, offset, mask,
// weight (o, c, kh, kw) and bias (o,) or NULL. Returns 0, or -1 if an argument is out of range.
int vsmsvsr_deform_conv(const float* x, const float* offset, const float* mask, const float* weight,
                        const float* bias, float* out, int n, int c, int h, int w, int ho, int wo, int kh, int kw,
                        int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w, int groups, int o,
                        int threads) {
  if (n < 1 || c < 1 || h < 1 || w < 1 || ho < 1 || wo < 1 || kh < 1 || kw < 1 || groups < 1 || c % groups ||
      stride_h < 1 || stride_w < 1 || dil_h < 1 || dil_w < 1 || o < 1)
    return -1;
  const ConvJob job{x, offset, mask, weight, bias, out, n, c, h, w, ho, wo, kh, kw, pad_h, pad_w, stride_h,
                    stride_w, dil_h, dil_w, groups, o};
  const int64_t plane = static_cast<int64_t>(ho) * wo;
  const int64_t total = n * ((plane + kBlock - 1) / kBlock);
  const int count = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads < 1 ? 1 : threads, total)));
  std::vector<std::thread> pool;
  pool.reserve(count - 1);
  for (int t = 1; t < count; ++t)
    pool.emplace_back(conv_blocks, std::cref(job), total * t / count, total * (t + 1) / count);
  conv_blocks(job, 0, total / count);
  for (auto& th : pool) th.join();
  return 0;
}

}  // extern "C"
