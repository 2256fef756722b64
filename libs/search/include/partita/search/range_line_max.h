#pragma once
// RangeLineMax: the most of slope[i] * x + intercept[i] over an index range [first, last], at any x. A
// segment tree whose nodes each hold the upper envelope of their entries' lines: O(n log n) set-up, O(log^2
// n) per query. The stage model's training peak uses it: at node i of a stage's backward the microbatch holds
// per-sample bytes (the slope, times the samples) and the gradients born so far (the intercept), so which
// node is the peak depends on the samples.
// Thread safety: immutable after construction; max_at may be called concurrently.
#include <algorithm>
#include <iterator>
#include <limits>
#include <vector>

#include "partita/core/error.h"

namespace partita {

class RangeLineMax {
 public:
  RangeLineMax() = default;
  RangeLineMax(const std::vector<double>& slope, const std::vector<double>& intercept) {
    PARTITA_ASSERT(slope.size() == intercept.size(), "one intercept per slope");
    size_ = slope.size();
    size_t width = 1;
    while (width < size_) width *= 2;
    hulls_.assign(2 * width, {});
    for (size_t i = 0; i < size_; ++i)
      hulls_[width + i] = {Line{slope[i], intercept[i], static_cast<int>(i)}};
    for (size_t k = width; k-- > 1;) {
      std::vector<Line> lines;
      std::merge(hulls_[2 * k].begin(), hulls_[2 * k].end(), hulls_[2 * k + 1].begin(),
                 hulls_[2 * k + 1].end(), std::back_inserter(lines),
                 [](const Line& a, const Line& b) { return a.slope < b.slope; });
      hulls_[k] = upper_envelope(lines);
    }
  }

  // The largest value at x over [first, last] (inside the entries) and an entry reaching it.
  struct Best {
    double value;
    int index;
  };
  Best max_at(int first, int last, double x) const {
    PARTITA_ASSERT(first <= last && last < static_cast<int>(size_), "range [", first, ", ", last,
                   "] outside ", size_, " entries");
    Best best{-std::numeric_limits<double>::infinity(), -1};
    const size_t width = hulls_.size() / 2;
    for (size_t lo = width + static_cast<size_t>(first), hi = width + static_cast<size_t>(last) + 1; lo < hi;
         lo /= 2, hi /= 2) {
      if (lo & 1) best = better(best, at(hulls_[lo++], x));
      if (hi & 1) best = better(best, at(hulls_[--hi], x));
    }
    return best;
  }

 private:
  struct Line {
    double slope, intercept;
    int index;
    double value(double x) const { return slope * x + intercept; }
  };
  static Best better(Best a, Best b) {
    return b.value > a.value || (b.value == a.value && b.index < a.index) ? b : a;
  }
  // Lines by ascending slope -> the ones that are the maximum somewhere, by ascending slope.
  static std::vector<Line> upper_envelope(const std::vector<Line>& lines) {
    std::vector<Line> hull;
    for (const Line& c : lines) {
      if (!hull.empty() && hull.back().slope == c.slope) {
        if (hull.back().intercept >= c.intercept) continue;
        hull.pop_back();
      }
      // b (the last) is never above both a and c when c overtakes a no later than b does.
      while (hull.size() >= 2) {
        const Line& a = hull[hull.size() - 2];
        const Line& b = hull.back();
        if ((c.intercept - a.intercept) * (b.slope - a.slope) <
            (b.intercept - a.intercept) * (c.slope - a.slope))
          break;
        hull.pop_back();
      }
      hull.push_back(c);
    }
    return hull;
  }
  // The envelope's values at x rise and then fall along it: the first line not below its successor.
  static Best at(const std::vector<Line>& hull, double x) {
    size_t lo = 0, hi = hull.size() - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (hull[mid].value(x) < hull[mid + 1].value(x))
        lo = mid + 1;
      else
        hi = mid;
    }
    return Best{hull[lo].value(x), hull[lo].index};
  }

  size_t size_ = 0;
  std::vector<std::vector<Line>> hulls_;  // [1, width): inner nodes; [width, 2 width): one entry each
};

}  // namespace partita
