#pragma once
// RangeLineMax: the most of slope[i] * x + intercept[i] over an index range [first, last], at any x. A
// segment tree whose nodes each hold the upper envelope of their entries' lines: O(n log n) set-up, O(log^2
// n) per query. The stage model's training peak uses it: at node i of a stage's backward the microbatch holds
// per-sample bytes (the slope, times the samples) and the gradients born so far (the intercept), so which
// node is the peak depends on the samples.
// At x >= 1 (a microbatch's samples: the planner's queries) a sparse table of envelopes over power-of-two
// windows answers instead, from two short envelopes (see build_sparse); it made the planner's GPT searches
// a third faster than the tree alone. Among entries reaching the maximum either may name a different one.
// Thread safety: immutable after construction; max_at may be called concurrently.
#include <algorithm>
#include <bit>
#include <cstdint>
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
    build_sparse();
  }

  // The largest value at x over [first, last] (inside the entries) and an entry reaching it.
  struct Best {
    double value;
    int index;
  };
  Best max_at(int first, int last, double x) const {
    PARTITA_ASSERT(first <= last && last < static_cast<int>(size_), "range [", first, ", ", last,
                   "] outside ", size_, " entries");
    if (x >= 1 && !sparse_begin_.empty()) {
      const int k = std::bit_width(static_cast<unsigned>(last - first + 1)) - 1;
      const std::vector<uint32_t>& begin = sparse_begin_[static_cast<size_t>(k)];
      const auto window = [&](int start) {
        const uint32_t lo = begin[static_cast<size_t>(start)], hi = begin[static_cast<size_t>(start) + 1];
        return at(sparse_lines_.data() + lo, hi - lo, x);
      };
      return better(window(first), window(last - (1 << k) + 1));
    }
    Best best{-std::numeric_limits<double>::infinity(), -1};
    const size_t width = hulls_.size() / 2;
    for (size_t lo = width + static_cast<size_t>(first), hi = width + static_cast<size_t>(last) + 1; lo < hi;
         lo /= 2, hi /= 2) {
      if (lo & 1) {
        const std::vector<Line>& h = hulls_[lo++];
        best = better(best, at(h.data(), h.size(), x));
      }
      if (hi & 1) {
        const std::vector<Line>& h = hulls_[--hi];
        best = better(best, at(h.data(), h.size(), x));
      }
    }
    return best;
  }
  // max_at with some entries counting less: `less` lists them by ascending index inside [first, last], each
  // giving its index (index_of) and how much less at x (less_of).
  template <class Entries, class IndexOf, class LessOf>
  Best max_at_less(int first, int last, double x, const Entries& less, IndexOf index_of,
                   LessOf less_of) const {
    Best best{-std::numeric_limits<double>::infinity(), -1};
    int from = first;
    for (const auto& e : less) {
      const int i = index_of(e);
      if (i > from) best = better(best, max_at(from, i - 1, x));
      const Best here = max_at(i, i, x);
      best = better(best, Best{here.value - less_of(e), here.index});
      from = i + 1;
    }
    if (from <= last) best = better(best, max_at(from, last, x));
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
  static size_t at_position(const Line* hull, size_t size, double x) {
    size_t lo = 0, hi = size - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (hull[mid].value(x) < hull[mid + 1].value(x))
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }
  static Best at(const Line* hull, size_t size, double x) {
    const Line& line = hull[at_position(hull, size, x)];
    return Best{line.value(x), line.index};
  }

  // For x >= 1 (a microbatch's samples, the planner's many queries): the envelope of every window [i, i +
  // 2^j) kept to the lines that are the maximum somewhere at x >= 1 (few), so that a query evaluates two
  // windows instead of up to 2 log n nodes of the tree. Windows of level j start at sparse_begin_[j][i] in
  // sparse_lines_ and end where window i + 1 starts. Left empty when the envelopes would be too long.
  void build_sparse() {
    constexpr size_t kMostLinesPerWindow = 8;  // on average: beyond it the tree alone answers
    std::vector<uint32_t> begin(size_ + 1);
    for (size_t i = 0; i < size_; ++i) {
      begin[i] = static_cast<uint32_t>(i);
      sparse_lines_.push_back(hulls_[hulls_.size() / 2 + i].front());
    }
    begin[size_] = static_cast<uint32_t>(size_);
    sparse_begin_.push_back(std::move(begin));
    std::vector<Line> merged;
    for (size_t span = 2; span <= size_; span *= 2) {
      const std::vector<uint32_t>& prev = sparse_begin_.back();
      const size_t windows = size_ - span + 1;
      std::vector<uint32_t> next(windows + 1);
      for (size_t i = 0; i < windows; ++i) {
        next[i] = static_cast<uint32_t>(sparse_lines_.size());
        // The two halves' windows (pointers used before sparse_lines_ grows below).
        const Line* lines = sparse_lines_.data();
        merged.clear();
        std::merge(lines + prev[i], lines + prev[i + 1], lines + prev[i + span / 2],
                   lines + prev[i + span / 2 + 1], std::back_inserter(merged),
                   [](const Line& a, const Line& b) { return a.slope < b.slope; });
        std::vector<Line> hull = upper_envelope(merged);
        // Lines before the one that is the maximum at x = 1 are the maximum only below 1.
        const size_t keep = at_position(hull.data(), hull.size(), 1.0);
        sparse_lines_.insert(sparse_lines_.end(), hull.begin() + static_cast<std::ptrdiff_t>(keep),
                             hull.end());
      }
      next[windows] = static_cast<uint32_t>(sparse_lines_.size());
      sparse_begin_.push_back(std::move(next));
      if (sparse_lines_.size() > kMostLinesPerWindow * size_ * sparse_begin_.size()) {
        sparse_lines_.clear();
        sparse_begin_.clear();
        return;
      }
    }
  }

  size_t size_ = 0;
  std::vector<std::vector<Line>> hulls_;  // [1, width): inner nodes; [width, 2 width): one entry each
  std::vector<Line> sparse_lines_;
  std::vector<std::vector<uint32_t>> sparse_begin_;
};

}  // namespace partita
