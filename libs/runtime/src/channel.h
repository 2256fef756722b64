#pragma once
// A blocking FIFO between two engine workers (waits spin briefly before they sleep: spin_condition.h).
// close() wakes every waiter: a failing worker uses it so that no other worker waits forever on a message
// that will never come (or for room that will never be made).
#include <deque>
#include <mutex>
#include <optional>

#include "spin_condition.h"

namespace partita::detail {

template <typename T>
class Channel {
 public:
  // Appends `item`. With a capacity, first waits while `capacity` items are waiting (the receiver is that far
  // behind); false when the channel was closed meanwhile (the item is dropped). 0: no limit.
  bool send(T item, size_t capacity = 0) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (capacity > 0) room_.wait(lock, [&] { return closed_ || queue_.size() < capacity; });
      if (closed_) return false;
      queue_.push_back(std::move(item));
    }
    cv_.notify_one();
    return true;
  }
  // Blocks until an item arrives; nullopt when the channel was closed because the step failed.
  std::optional<T> receive() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (closed_) return std::nullopt;
    T item = std::move(queue_.front());
    queue_.pop_front();
    room_.notify_all();
    return item;
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
    room_.notify_all();
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = false;
    queue_.clear();
  }

 private:
  std::mutex mutex_;
  SpinCondition cv_, room_;  // an item arrived; an item was taken
  std::deque<T> queue_;
  bool closed_ = false;
};

}  // namespace partita::detail
