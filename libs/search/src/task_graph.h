#pragma once
// Internal to the search library: the simulator's task graph. Tasks run on resources (devices, link lanes,
// collectives) one at a time in the order they were enqueued on that resource; a task starts when its
// resource is free and every task it depends on has ended. Used by the range-stage and branch simulations.
#include <algorithm>
#include <string>
#include <vector>

#include "partita/core/error.h"
#include "partita/search/simulator.h"

namespace partita::detail {

struct Work {
  SimTask info;
  Seconds duration{0};
  std::vector<int> dependents;
  int waiting = 0;  // unfinished inputs
  Seconds inputs_done{0};
};

class TaskGraph {
 public:
  int add_resource(std::string name, int device) {
    resources_.push_back(SimResource{std::move(name), device});
    queues_.emplace_back();
    return static_cast<int>(resources_.size()) - 1;
  }
  int add(std::string name, TaskKind kind, int resource, int stage, int mb, Seconds duration) {
    Work w;
    w.info = SimTask{std::move(name), kind, resource, stage, mb, Seconds(0), Seconds(0)};
    w.duration = duration;
    work_.push_back(std::move(w));
    return static_cast<int>(work_.size()) - 1;
  }
  int size() const { return static_cast<int>(work_.size()); }
  void depend(int task, int on) {
    work_[static_cast<size_t>(on)].dependents.push_back(task);
    ++work_[static_cast<size_t>(task)].waiting;
  }
  // Tasks run on their resource in the order they are enqueued.
  void enqueue(int task) {
    queues_[static_cast<size_t>(work_[static_cast<size_t>(task)].info.resource)].push_back(task);
  }

  // After run(): the simulation's resources, tasks, step time and throughput (per-device figures are the
  // caller's).
  Simulation timeline(const Plan& plan) const {
    Simulation sim;
    sim.resources = resources_;
    for (const Work& w : work_) {
      sim.tasks.push_back(w.info);
      sim.step_time = std::max(sim.step_time, w.info.end);
    }
    sim.prediction.step_time = sim.step_time;
    sim.prediction.samples_per_second =
        sim.step_time.value() > 0 ? plan.global_batch / sim.step_time.value() : 0;
    return sim;
  }

  // List scheduling with fixed per-resource orders: a head task starts when its inputs are done.
  // Throws InternalError when the per-resource orders deadlock (a task waits on one queued behind it).
  void run() {
    std::vector<size_t> head(queues_.size(), 0);
    std::vector<Seconds> free(queues_.size(), Seconds(0));
    std::vector<int> pending;
    for (size_t r = 0; r < queues_.size(); ++r) pending.push_back(static_cast<int>(r));
    size_t finished = 0;
    while (!pending.empty()) {
      const auto r = static_cast<size_t>(pending.back());
      pending.pop_back();
      while (head[r] < queues_[r].size()) {
        Work& w = work_[static_cast<size_t>(queues_[r][head[r]])];
        if (w.waiting > 0) break;
        w.info.start = std::max(free[r], w.inputs_done);
        w.info.end = w.info.start + w.duration;
        free[r] = w.info.end;
        ++head[r];
        ++finished;
        for (int d : w.dependents) {
          Work& dep = work_[static_cast<size_t>(d)];
          dep.inputs_done = std::max(dep.inputs_done, w.info.end);
          if (--dep.waiting == 0) pending.push_back(dep.info.resource);
        }
      }
    }
    PARTITA_ASSERT(finished == work_.size(), "simulation deadlock: ", work_.size() - finished,
                   " tasks never ran");
  }
  const std::vector<Work>& work() const { return work_; }
  std::vector<SimResource>& resources() { return resources_; }

 private:
  std::vector<SimResource> resources_;
  std::vector<std::vector<int>> queues_;
  std::vector<Work> work_;
};

}  // namespace partita::detail
