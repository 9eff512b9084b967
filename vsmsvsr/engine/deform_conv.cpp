// Modulated deformable im2col (DCNv2) on the CPU, on several std::threads.
//
// Built by vsmsvsr/engine/deform.py with g++ into the user cache and called through ctypes on
// tensors' data pointers (no copies). The GEMM that follows is Paddle's own matmul. std::thread,
// not OpenMP: Paddle already loads two OpenMP runtimes, and a third one fights them for cores.
//
// Layout (Paddle's deform_conv2d): x (n, c, h, w); offset (n, 2*g*kh*kw, ho, wo) with (dy, dx)
// per tap, taps in row-major order, deformable group major; mask (n, g*kh*kw, ho, wo);
// columns (n, c*kh*kw, ho*wo), row c*kh*kw + tap. Sampling is bilinear with zeros outside the
// image, and a sample whose position lies at or beyond one pixel outside is zero (as Paddle).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace {

inline float bilinear(const float* im, int h, int w, float y, float x) {
  const int y0 = static_cast<int>(std::floor(y));
  const int x0 = static_cast<int>(std::floor(x));
  const int y1 = y0 + 1, x1 = x0 + 1;
  const float ly = y - y0, lx = x - x0;
  const float hy = 1.f - ly, hx = 1.f - lx;
  const float v1 = (y0 >= 0 && x0 >= 0) ? im[y0 * w + x0] : 0.f;
  const float v2 = (y0 >= 0 && x1 <= w - 1) ? im[y0 * w + x1] : 0.f;
  const float v3 = (y1 <= h - 1 && x0 >= 0) ? im[y1 * w + x0] : 0.f;
  const float v4 = (y1 <= h - 1 && x1 <= w - 1) ? im[y1 * w + x1] : 0.f;
  return hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
}

struct Job {
  const float *x, *offset, *mask;
  float* cols;
  int n, c, h, w, ho, wo, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups;
};

// Rows [begin, end) of all n samples' columns; a row is (channel, tap).
void rows(const Job& j, int64_t begin, int64_t end) {
  const int taps = j.kh * j.kw;
  const int per_group = j.c / j.groups;
  const int64_t plane = static_cast<int64_t>(j.ho) * j.wo;
  for (int s = 0; s < j.n; ++s) {
    const float* x = j.x + static_cast<int64_t>(s) * j.c * j.h * j.w;
    const float* off = j.offset + static_cast<int64_t>(s) * 2 * j.groups * taps * plane;
    const float* msk = j.mask + static_cast<int64_t>(s) * j.groups * taps * plane;
    float* cols = j.cols + static_cast<int64_t>(s) * j.c * taps * plane;
    for (int64_t row = begin; row < end; ++row) {
      const int ch = static_cast<int>(row / taps), tap = static_cast<int>(row % taps);
      const int g = ch / per_group;
      const int i = tap / j.kw, k = tap % j.kw;
      const float* im = x + static_cast<int64_t>(ch) * j.h * j.w;
      const float* dy = off + (static_cast<int64_t>(g) * 2 * taps + 2 * tap) * plane;
      const float* dx = dy + plane;
      const float* m = msk + (static_cast<int64_t>(g) * taps + tap) * plane;
      float* out = cols + row * plane;
      for (int oy = 0; oy < j.ho; ++oy) {
        const int base_y = oy * j.stride_h - j.pad_h + i * j.dil_h;
        for (int ox = 0; ox < j.wo; ++ox) {
          const int64_t p = static_cast<int64_t>(oy) * j.wo + ox;
          const float y = base_y + dy[p];
          const float xx = (ox * j.stride_w - j.pad_w + k * j.dil_w) + dx[p];
          float v = 0.f;
          if (y > -1.f && xx > -1.f && y < j.h && xx < j.w) v = bilinear(im, j.h, j.w, y, xx);
          out[p] = v * m[p];
        }
      }
    }
  }
}

}  // namespace

extern "C" {

int vsmsvsr_deform_im2col_version() { return 1; }

// Returns 0, or -1 if an argument is out of range (nothing written).
int vsmsvsr_deform_im2col(const float* x, const float* offset, const float* mask, float* cols, int n, int c,
                          int h, int w, int ho, int wo, int kh, int kw, int pad_h, int pad_w, int stride_h,
                          int stride_w, int dil_h, int dil_w, int groups, int threads) {
  if (n < 1 || c < 1 || h < 1 || w < 1 || ho < 1 || wo < 1 || kh < 1 || kw < 1 || groups < 1 || c % groups ||
      stride_h < 1 || stride_w < 1 || dil_h < 1 || dil_w < 1)
    return -1;
  const Job job{x, offset, mask, cols, n, c, h, w, ho, wo, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w,
                groups};
  const int64_t total = static_cast<int64_t>(c) * kh * kw;
  const int count = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads < 1 ? 1 : threads, total)));
  if (count == 1) {
    rows(job, 0, total);
    return 0;
  }
  std::vector<std::thread> pool;
  pool.reserve(count - 1);
  for (int t = 1; t < count; ++t)
    pool.emplace_back(rows, std::cref(job), total * t / count, total * (t + 1) / count);
  rows(job, 0, total / count);
  for (auto& th : pool) th.join();
  return 0;
}

}  // extern "C"
