#pragma once
// A blocking FIFO between two engine workers. close_with_error() wakes every waiter: a failing worker uses it
// so that no other worker waits forever on a message that will never come.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace partita::detail {

template <typename T>
class Channel {
 public:
  void send(T item) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_one();
  }
  // Blocks until an item arrives; nullopt when the channel was closed because the step failed.
  std::optional<T> receive() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (closed_) return std::nullopt;
    T item = std::move(queue_.front());
    queue_.pop_front();
    return item;
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = false;
    queue_.clear();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<T> queue_;
  bool closed_ = false;
};

}  // namespace partita::detail
