// Modulated deformable convolution (DCNv2) on the CPU, on several std::threads.
//
// Built by vsmsvsr/engine/deform.py with g++ into the user cache and called through ctypes on
// tensors' data pointers (no copies). std::thread, not OpenMP: Paddle already loads two OpenMP
// runtimes, and a third one fights them for cores.
//
// Layout (Paddle's deform_conv2d): x (n, c, h, w); offset (n, 2*g*kh*kw, ho, wo) with (dy, dx)
// per tap, taps in row-major order, deformable group major; mask (n, g*kh*kw, ho, wo). Sampling
// is bilinear with zeros outside the image, and a sample whose position lies at or beyond one
// pixel outside is zero (as Paddle).
//
// Two passes. (1) x is copied channels-last, (n, h, w, c): a bilinear sample of one deformable
// group then reads its channels as four short contiguous runs (one per corner) and the channel
// loop is a vector loop. (2) Blocks of kBlock output positions: per (group, tap) the positions
// and weights of the four corners are computed for the whole block (branch-free, a vector loop),
// the block's columns are sampled position-major (kBlock rows of kh*kw*c values, tap-major:
// ~73 KB for PP-MSVSR, they stay in the L2 cache), then multiplied by the weights, permuted to
// the same (tap, channel) order, into the output. The products are Paddle's; only the order of
// the sums differs (rel-L2 ~1e-7).
#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdint>
#include <functional>
#include <new>
#include <thread>
#include <vector>

namespace {

constexpr int kBlock = 64;  // output positions per block
constexpr int kRows = 8;    // positions per GEMM micro-tile
constexpr int kLanes = 16;  // floats per vector (GCC/Clang vector extension: any target)
typedef float vec __attribute__((vector_size(kLanes * sizeof(float))));

struct ConvJob {
  const float *x, *offset, *mask, *bias;
  const float* wt;  // weights permuted to (kh*kw*c, o): row tap*c + channel
  float* xt;        // x channels-last (n, h, w, c)
  float* out;
  int n, c, h, w, ho, wo, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups, o;
};

// x (n, c, h, w) -> xt (n, h, w, c), rows [begin, end) of the n*h rows.
void to_channels_last(const ConvJob& j, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t s = row / j.h, y = row % j.h;
    float* dst = j.xt + row * j.w * j.c;
    for (int ch = 0; ch < j.c; ++ch) {
      const float* src = j.x + ((s * j.c + ch) * j.h + y) * j.w;
      for (int x = 0; x < j.w; ++x) dst[static_cast<int64_t>(x) * j.c + ch] = src[x];
    }
  }
}

// out[o0:o0+no, q0:q0+nq of the block] = bias + wt^T . cols, for any no <= 2*kLanes, nq <= kRows.
void gemm_tile(const ConvJob& j, const float* cols, int rows, int q0, int nq, int o0, int no, float* out,
               int64_t plane) {
  float acc[kRows][2 * kLanes];
  for (int qq = 0; qq < nq; ++qq)
    for (int oo = 0; oo < no; ++oo) acc[qq][oo] = j.bias ? j.bias[o0 + oo] : 0.f;
  for (int r = 0; r < rows; ++r) {
    const float* wr = j.wt + static_cast<int64_t>(r) * j.o + o0;
    for (int qq = 0; qq < nq; ++qq) {
      const float cv = cols[static_cast<int64_t>(q0 + qq) * rows + r];
      for (int oo = 0; oo < no; ++oo) acc[qq][oo] += cv * wr[oo];
    }
  }
  for (int qq = 0; qq < nq; ++qq)
    for (int oo = 0; oo < no; ++oo) out[static_cast<int64_t>(o0 + oo) * plane + q0 + qq] = acc[qq][oo];
}

// The full micro-tile (kRows positions x 2*kLanes output channels), accumulators in registers.
void gemm_tile_full(const ConvJob& j, const float* cols, int rows, int q0, int o0, float* out, int64_t plane) {
  vec acc[kRows][2];
  vec b0, b1;
  for (int l = 0; l < kLanes; ++l) {
    b0[l] = j.bias ? j.bias[o0 + l] : 0.f;
    b1[l] = j.bias ? j.bias[o0 + kLanes + l] : 0.f;
  }
#pragma GCC unroll 8
  for (int qq = 0; qq < kRows; ++qq) { acc[qq][0] = b0; acc[qq][1] = b1; }
  const float* c0 = cols + static_cast<int64_t>(q0) * rows;
  for (int r = 0; r < rows; ++r) {
    vec w0, w1;
    __builtin_memcpy(&w0, j.wt + static_cast<int64_t>(r) * j.o + o0, sizeof(vec));
    __builtin_memcpy(&w1, j.wt + static_cast<int64_t>(r) * j.o + o0 + kLanes, sizeof(vec));
#pragma GCC unroll 8
    for (int qq = 0; qq < kRows; ++qq) {
      const float cv = c0[static_cast<int64_t>(qq) * rows + r];
      acc[qq][0] += cv * w0;
      acc[qq][1] += cv * w1;
    }
  }
  for (int qq = 0; qq < kRows; ++qq)
    for (int l = 0; l < kLanes; ++l) {
      out[static_cast<int64_t>(o0 + l) * plane + q0 + qq] = acc[qq][0][l];
      out[static_cast<int64_t>(o0 + kLanes + l) * plane + q0 + qq] = acc[qq][1][l];
    }
}

// The four bilinear corners of the block's ``len`` samples of one (group, tap), in vectors of
// kLanes positions: ``idx`` their offsets in the channels-last image (clamped inside it) and
// ``wt`` their weights times the mask (0 for a corner outside the image, all 0 for a sample at or
// beyond one pixel outside, or not a number).
typedef int ivec __attribute__((vector_size(kLanes * sizeof(int))));

void corners(const ConvJob& j, const int* oy, const int* ox, int ty, int tx, const float* dy, const float* dx,
             const float* m, int len, int (*idx)[kBlock], float (*wt)[kBlock]) {
  alignas(64) float pad[3][kBlock];
  if (len < kBlock) {  // the last block of a plane: no reads past its end
    for (int q = 0; q < kBlock; ++q) {
      pad[0][q] = q < len ? dy[q] : 0.f;
      pad[1][q] = q < len ? dx[q] : 0.f;
      pad[2][q] = q < len ? m[q] : 0.f;
    }
    dy = pad[0], dx = pad[1], m = pad[2];
  }
  const int h = j.h, w = j.w, c = j.c;
  const vec hmax = vec{} + static_cast<float>(h), wmax = vec{} + static_cast<float>(w);
  const vec zero = vec{}, one = vec{} + 1.f, minus1 = vec{} - 1.f;
  for (int q = 0; q < kBlock; q += kLanes) {
    ivec iy, ix;
    vec fdy, fdx, fm;
    __builtin_memcpy(&iy, oy + q, sizeof(ivec));
    __builtin_memcpy(&ix, ox + q, sizeof(ivec));
    __builtin_memcpy(&fdy, dy + q, sizeof(vec));
    __builtin_memcpy(&fdx, dx + q, sizeof(vec));
    __builtin_memcpy(&fm, m + q, sizeof(vec));
    vec y = __builtin_convertvector(iy * j.stride_h + ty, vec) + fdy;
    vec x = __builtin_convertvector(ix * j.stride_w + tx, vec) + fdx;
    const ivec inside = (y > minus1) & (x > minus1) & (y < hmax) & (x < wmax);  // false for NaN
    y = inside ? y : zero;
    x = inside ? x : zero;
    ivec y0 = __builtin_convertvector(y, ivec), x0 = __builtin_convertvector(x, ivec);  // toward 0
    y0 -= (__builtin_convertvector(y0, vec) > y) & 1;  // floor (y > -1 here)
    x0 -= (__builtin_convertvector(x0, vec) > x) & 1;
    const vec ly = y - __builtin_convertvector(y0, vec), lx = x - __builtin_convertvector(x0, vec);
    const vec hy = one - ly, hx = one - lx;
    const vec mm = inside ? fm : zero;
    const ivec top = y0 >= 0, bottom = y0 + 1 <= h - 1, left = x0 >= 0, right = x0 + 1 <= w - 1;
    const ivec ry0 = y0 < 0 ? 0 : y0, ry1 = y0 + 1 > h - 1 ? h - 1 : y0 + 1;
    const ivec rx0 = x0 < 0 ? 0 : x0, rx1 = x0 + 1 > w - 1 ? w - 1 : x0 + 1;
    const ivec i0 = (ry0 * w + rx0) * c, i1 = (ry0 * w + rx1) * c, i2 = (ry1 * w + rx0) * c, i3 = (ry1 * w + rx1) * c;
    const vec w0 = (top & left) ? hy * hx * mm : zero, w1 = (top & right) ? hy * lx * mm : zero;
    const vec w2 = (bottom & left) ? ly * hx * mm : zero, w3 = (bottom & right) ? ly * lx * mm : zero;
    __builtin_memcpy(idx[0] + q, &i0, sizeof(ivec));
    __builtin_memcpy(idx[1] + q, &i1, sizeof(ivec));
    __builtin_memcpy(idx[2] + q, &i2, sizeof(ivec));
    __builtin_memcpy(idx[3] + q, &i3, sizeof(ivec));
    __builtin_memcpy(wt[0] + q, &w0, sizeof(vec));
    __builtin_memcpy(wt[1] + q, &w1, sizeof(vec));
    __builtin_memcpy(wt[2] + q, &w2, sizeof(vec));
    __builtin_memcpy(wt[3] + q, &w3, sizeof(vec));
  }
}

// The block's bilinear samples of one (group, tap): per position, the group's ``width`` channels
// from the four corners (channels-last: four contiguous runs). ``Width`` > 0: one vector of that
// many floats (the common group widths); 0: any width, a plain loop.
template <int Width>
void sample(const float* base, const int (*idx)[kBlock], const float (*wt)[kBlock], int len, float* col,
            int rows, int width) {
  if constexpr (Width > 0) {
    typedef float run __attribute__((vector_size(Width * sizeof(float))));
    for (int q = 0; q < len; ++q) {
      run a, b, c, d;
      __builtin_memcpy(&a, base + idx[0][q], sizeof(run));
      __builtin_memcpy(&b, base + idx[1][q], sizeof(run));
      __builtin_memcpy(&c, base + idx[2][q], sizeof(run));
      __builtin_memcpy(&d, base + idx[3][q], sizeof(run));
      const run r = wt[0][q] * a + wt[1][q] * b + wt[2][q] * c + wt[3][q] * d;
      __builtin_memcpy(col + static_cast<int64_t>(q) * rows, &r, sizeof(run));
    }
  } else {
    for (int q = 0; q < len; ++q) {
      const float *a = base + idx[0][q], *b = base + idx[1][q], *c = base + idx[2][q], *d = base + idx[3][q];
      const float w0 = wt[0][q], w1 = wt[1][q], w2 = wt[2][q], w3 = wt[3][q];
      float* dst = col + static_cast<int64_t>(q) * rows;
      for (int ch = 0; ch < width; ++ch) dst[ch] = w0 * a[ch] + w1 * b[ch] + w2 * c[ch] + w3 * d[ch];
    }
  }
}

void conv_blocks(const ConvJob& j, int64_t begin, int64_t end) {
  const int taps = j.kh * j.kw;
  const int per_group = j.c / j.groups;
  const int rows = j.c * taps;
  const int64_t plane = static_cast<int64_t>(j.ho) * j.wo;
  const int64_t blocks = (plane + kBlock - 1) / kBlock;
  std::vector<float> cols(static_cast<size_t>(rows) * kBlock);
  alignas(64) int oy[kBlock], ox[kBlock], idx[4][kBlock];
  alignas(64) float wt[4][kBlock];
  for (int64_t item = begin; item < end; ++item) {
    const int s = static_cast<int>(item / blocks);
    const int64_t p0 = (item % blocks) * kBlock;
    const int len = static_cast<int>(std::min<int64_t>(kBlock, plane - p0));
    const float* xt = j.xt + static_cast<int64_t>(s) * j.h * j.w * j.c;
    const float* off = j.offset + static_cast<int64_t>(s) * 2 * j.groups * taps * plane;
    const float* msk = j.mask + static_cast<int64_t>(s) * j.groups * taps * plane;
    {
      int y = static_cast<int>(p0 / j.wo), x = static_cast<int>(p0 % j.wo);
      for (int q = 0; q < kBlock; ++q) {
        oy[q] = y;
        ox[q] = x;
        if (++x == j.wo) { x = 0; ++y; }
      }
    }
    for (int g = 0; g < j.groups; ++g) {
      for (int tap = 0; tap < taps; ++tap) {
        const int i = tap / j.kw, k = tap % j.kw;
        const float* dy = off + (static_cast<int64_t>(g) * 2 * taps + 2 * tap) * plane + p0;
        const float* dx = dy + plane;
        const float* m = msk + (static_cast<int64_t>(g) * taps + tap) * plane + p0;
        corners(j, oy, ox, i * j.dil_h - j.pad_h, k * j.dil_w - j.pad_w, dy, dx, m, len, idx, wt);
        float* col = cols.data() + tap * j.c + g * per_group;
        const float* base = xt + g * per_group;
        switch (per_group) {  // the common widths as fixed-length (vector) loops
          case 4: sample<4>(base, idx, wt, len, col, rows, 4); break;
          case 8: sample<8>(base, idx, wt, len, col, rows, 8); break;
          case 16: sample<16>(base, idx, wt, len, col, rows, 16); break;
          default: sample<0>(base, idx, wt, len, col, rows, per_group);
        }
      }
    }
    float* out = j.out + static_cast<int64_t>(s) * j.o * plane + p0;
    for (int q0 = 0; q0 < len; q0 += kRows) {
      const int nq = std::min(kRows, len - q0);
      for (int o0 = 0; o0 < j.o; o0 += 2 * kLanes) {
        const int no = std::min(2 * kLanes, j.o - o0);
        if (nq == kRows && no == 2 * kLanes)
          gemm_tile_full(j, cols.data(), rows, q0, o0, out, plane);
        else
          gemm_tile(j, cols.data(), rows, q0, nq, o0, no, out, plane);
      }
    }
  }
}

template <typename Fn>
void on_threads(Fn fn, const ConvJob& job, int64_t total, int threads) {
  const int count = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads < 1 ? 1 : threads, total)));
  std::vector<std::thread> pool;
  pool.reserve(count - 1);
  for (int t = 1; t < count; ++t) pool.emplace_back(fn, std::cref(job), total * t / count, total * (t + 1) / count);
  fn(job, 0, total / count);
  for (auto& th : pool) th.join();
}

}  // namespace

extern "C" {

int vsmsvsr_deform_conv_version() { return 3; }

// The whole modulated deformable convolution (groups=1): out (n, o, ho, wo) from x, offset, mask,
// weight (o, c, kh, kw) and bias (o,) or NULL. Returns 0, -1 if an argument is out of range, -2 if
// memory for the channels-last copy of x could not be had, -3 if one image holds 2**31 values or more.
int vsmsvsr_deform_conv(const float* x, const float* offset, const float* mask, const float* weight,
                        const float* bias, float* out, int n, int c, int h, int w, int ho, int wo, int kh, int kw,
                        int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w, int groups, int o,
                        int threads) {
  if (n < 1 || c < 1 || h < 1 || w < 1 || ho < 1 || wo < 1 || kh < 1 || kw < 1 || groups < 1 || c % groups ||
      stride_h < 1 || stride_w < 1 || dil_h < 1 || dil_w < 1 || o < 1)
    return -1;
  if (static_cast<int64_t>(h) * w * c > INT32_MAX) return -3;  // sample offsets are 32-bit
  const int taps = kh * kw;
  std::vector<float> xt, wt;
  try {
    xt.resize(static_cast<size_t>(n) * c * h * w);
    wt.resize(static_cast<size_t>(taps) * c * o);
  } catch (const std::bad_alloc&) {
    return -2;
  }
  for (int oo = 0; oo < o; ++oo)
    for (int ch = 0; ch < c; ++ch)
      for (int tap = 0; tap < taps; ++tap)
        wt[(static_cast<size_t>(tap) * c + ch) * o + oo] = weight[(static_cast<size_t>(oo) * c + ch) * taps + tap];
  const ConvJob job{x, offset, mask, bias, wt.data(), xt.data(), out, n, c, h, w, ho, wo, kh, kw, pad_h, pad_w,
                    stride_h, stride_w, dil_h, dil_w, groups, o};
  on_threads(to_channels_last, job, static_cast<int64_t>(n) * h, threads);
  const int64_t plane = static_cast<int64_t>(ho) * wo;
  on_threads(conv_blocks, job, n * ((plane + kBlock - 1) / kBlock), threads);
  return 0;
}

}  // extern "C"
