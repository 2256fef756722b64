#include "partita/runtime/distributed_group.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "partita/core/error.h"
#include "partita/core/log.h"
#include "partita/torch_bridge/model.h"
#include "shared_memory_exchange.h"
#include "shared_memory_mailbox.h"

namespace partita {

namespace {

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string string_of(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

}  // namespace

struct DistributedGroup::Impl {
  DistributedEnv env;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;  // prefixed "partita/" for our own keys
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  c10::intrusive_ptr<c10d::Store> base;                               // for subgroups' rendezvous
  std::vector<c10::intrusive_ptr<c10d::ProcessGroupGloo>> subgroups;  // add_subgroup
  std::vector<std::vector<int>> subgroup_ranks;
  std::vector<int> world_ranks;  // 0 .. world_size - 1
  // Collectives and messages among ranks of one host (DistributedEnv::shared_memory); null: through Gloo.
  std::unique_ptr<detail::SharedMemoryExchange> world_memory;
  std::vector<std::unique_ptr<detail::SharedMemoryExchange>> subgroup_memory;  // per subgroup
  std::unique_ptr<detail::SharedMemoryMailbox> mailbox;                        // world rank = member
  struct PendingSend {
    c10::intrusive_ptr<c10d::Work> work;  // null through the mailbox
    int to = 0;
    std::string what;
  };
  std::vector<PendingSend> pending_sends;

  std::string where() const { return env.master_addr + ":" + std::to_string(env.master_port); }

  c10::intrusive_ptr<c10d::ProcessGroupGloo::Options> gloo_options() const {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(is_loopback(env.master_addr)
                                   ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    return options;
  }

  // Why a collective of `step` failed, from the store: a rank that reported its own failure, else the ranks
  // that did not reach this step.
  std::string diagnose(int step) const {
    std::string found;
    try {
      for (int r = 0; r < env.world_size; ++r) {
        if (r == env.rank) continue;
        const std::string failed = "failed/" + std::to_string(r);
        if (store->check({failed}))
          return "rank " + std::to_string(r) + " failed: " + string_of(store->get(failed));
      }
      for (int r = 0; r < env.world_size && step >= 0; ++r) {
        if (r == env.rank) continue;
        const std::string key = "step/" + std::to_string(r);
        const int last = store->check({key}) ? std::stoi(string_of(store->get(key))) : -1;
        if (last >= step) continue;
        found += (found.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
                 " did not reach step " + std::to_string(step) + " (last seen at step " +
                 std::to_string(last) + "; it died or stalled)";
      }
    } catch (const std::exception&) {
      return env.agent_store ? "the launcher's store at " + where() + " is gone"
                             : "rank 0, which hosts the store at " + where() + ", is gone (it died)";
    }
    return found;
  }

  // Why a message from or to `peer` failed: the error it reported, else that it died or stalled.
  [[noreturn]] void fail_peer(int peer, const std::string& what, const std::exception& cause,
                              const char* via = "gloo") const {
    std::string why = "rank " + std::to_string(peer) + " died or stalled";
    try {
      const std::string failed = "failed/" + std::to_string(peer);
      if (store->check({failed}))
        why = "rank " + std::to_string(peer) + " failed: " + string_of(store->get(failed));
    } catch (const std::exception&) {
      if (peer != 0) why += "; so did the store at " + where();
    }
    PARTITA_FAIL(what, ": ", why, " (", via, ": ", first_line(cause), ")");
  }

  // Connects to the rendezvous store (hosting it when `host`), the launcher's prefix applied: the base store.
  c10::intrusive_ptr<c10d::Store> connect(bool host) const {
    c10::intrusive_ptr<c10d::Store> connected;
    try {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(env.master_port);
      o.isServer = host;
      o.numWorkers = env.world_size;
      o.waitWorkers = false;
      o.timeout = timeout;
      o.multiTenant = true;
      connected = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    } catch (const std::exception& e) {
      PARTITA_FAIL("rank ", env.rank, ": cannot ", host ? "host" : "reach", " the rendezvous store at ",
                   where(), " within ", env.timeout.value(), " s: ", first_line(e),
                   "; check MASTER_ADDR/MASTER_PORT (a free port) and that every rank was started");
    }
    if (env.agent_store) {
      connected = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(env.restart_count), connected);
    }
    return connected;
  }

  std::vector<std::string> gather_to_rank0(const std::string& key, const std::string& text) {
    const auto slot = [&](int r) { return "gather/" + key + "/" + std::to_string(r); };
    try {
      store->set(slot(env.rank), bytes_of(text));
    } catch (const std::exception& e) {
      fail(-1, "posting " + key + " to rank 0", e);
    }
    if (env.rank != 0) return {};
    std::vector<std::string> out;
    for (int r = 0; r < env.world_size; ++r) {
      try {
        store->wait({slot(r)}, timeout);
        out.push_back(string_of(store->get(slot(r))));
      } catch (const std::exception& e) {
        fail_peer(r, "gathering " + key, e);
      }
    }
    return out;
  }

  std::string broadcast_from_rank0(const std::string& key, const std::string& text,
                                   std::chrono::milliseconds wait_at_most) {
    const std::string slot = "broadcast/" + key;
    if (env.rank == 0) {
      try {
        store->set(slot, bytes_of(text));
      } catch (const std::exception& e) {
        fail(-1, "broadcasting " + key, e);
      }
      return text;
    }
    try {
      store->wait({slot}, wait_at_most);
      return string_of(store->get(slot));
    } catch (const std::exception& e) {
      fail_peer(0, "receiving " + key + " from rank 0", e);
    }
  }

  [[noreturn]] void fail(int step, const std::string& what, const std::exception& cause,
                         const char* via = "gloo") const {
    const std::string who = diagnose(step);
    PARTITA_FAIL("rank ", env.rank, ": ", what, step >= 0 ? " of step " + std::to_string(step) : "",
                 " failed: ", who.empty() ? "a peer rank stopped answering" : who, " (", via, ": ",
                 first_line(cause), ")");
  }

  // A message through the mailbox from or to `peer` failed: named as Gloo's failures are.
  [[noreturn]] void fail_message(int peer, const std::string& what, const detail::PeerLost& lost) const {
    fail_peer(peer, what, std::runtime_error("rank " + std::to_string(peer) + ": " + lost.what()),
              "shared memory");
  }

  // A collective through `memory` among `ranks` failed: the error names the ranks at fault as Gloo's does.
  [[noreturn]] void fail_shared(int step, const std::string& what, const detail::PeerLost& lost,
                                const std::vector<int>& ranks) const {
    const std::runtime_error cause("rank " + std::to_string(ranks.at(static_cast<size_t>(lost.member))) +
                                   ": " + lost.what());
    fail(step, what, cause, "shared memory");
  }

  // Collective over `ranks` (this one among them): a shared-memory segment of kind `Memory` (an exchange for
  // collectives, a mailbox for messages) when every one of them can map it (one host, one pid namespace,
  // room in /dev/shm), else null (Gloo). Member 0 makes it with `create` and posts its name under
  // "shm/<key>"; every member posts whether it joined and reads the others'.
  template <class Memory>
  std::unique_ptr<Memory> share_memory(
      const std::string& key, const std::vector<int>& ranks,
      const std::function<std::unique_ptr<Memory>(int members, std::string& why)>& create) {
    const int member = static_cast<int>(std::find(ranks.begin(), ranks.end(), env.rank) - ranks.begin());
    const std::string ns = detail::pid_namespace();
    std::unique_ptr<Memory> memory;
    std::string why = env.shared_memory ? "no pid namespace in /proc" : "PARTITA_SHARED_MEMORY=0";
    const std::string segment_key = "shm/" + key + "/segment";
    try {
      if (member == 0) {
        if (env.shared_memory && !ns.empty()) memory = create(static_cast<int>(ranks.size()), why);
        store->set(
            segment_key,
            bytes_of(memory ? memory->name() + " " + std::to_string(memory->token()) + " " + ns : "-"));
      } else {
        store->wait({segment_key}, timeout);
        std::istringstream posted(string_of(store->get(segment_key)));
        std::string name, their_ns;
        uint64_t token = 0;
        posted >> name >> token >> their_ns;
        if (name == "-") {
          why = "rank " + std::to_string(ranks[0]) + " made no segment";
        } else if (env.shared_memory && !ns.empty()) {
          if (their_ns == ns)
            memory = Memory::join(name, token, member, why);
          else
            why = "another pid namespace than rank " + std::to_string(ranks[0]);
        }
      }
      store->set("shm/" + key + "/joined/" + std::to_string(member), bytes_of(memory ? "1" : "0 " + why));
    } catch (const std::exception& e) {
      fail_peer(ranks[0], "setting up shared memory with rank " + std::to_string(ranks[0]), e);
    }
    bool everyone = memory != nullptr;
    for (size_t m = 0; m < ranks.size(); ++m) {
      if (static_cast<int>(m) == member) continue;
      const std::string joined = "shm/" + key + "/joined/" + std::to_string(m);
      try {
        store->wait({joined}, timeout);
        const std::string answer = string_of(store->get(joined));
        if (answer != "1") {
          everyone = false;
          if (memory)
            why =
                "rank " + std::to_string(ranks[m]) + ": " + answer.substr(std::min<size_t>(2, answer.size()));
        }
      } catch (const std::exception& e) {
        fail_peer(ranks[m], "setting up shared memory with rank " + std::to_string(ranks[m]), e);
      }
    }
    // Every member has mapped it (or given up): the name can go, so nothing is left behind in /dev/shm.
    if (memory) memory->unlink();
    if (!everyone) memory.reset();
    log_debug("rank " + std::to_string(env.rank) + ": " + key + " through " +
              (memory ? std::string("shared memory") : "Gloo (" + why + ")"));
    return memory;
  }
};

DistributedGroup::DistributedGroup(const DistributedEnv& env) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.env = env;
  // A write to a peer that died must be an error, not a SIGPIPE that kills this rank without a word.
  std::signal(SIGPIPE, SIG_IGN);
  PARTITA_CHECK(env.world_size >= 2 && env.rank >= 0 && env.rank < env.world_size, "bad rank ", env.rank,
                " for world size ", env.world_size, "; check RANK and WORLD_SIZE");
  s.timeout = std::chrono::milliseconds(static_cast<int64_t>(env.timeout.value() * 1000));
  const c10::intrusive_ptr<c10d::Store> base = s.connect(/*host=*/env.rank == 0 && !env.agent_store);
  s.store = c10::make_intrusive<c10d::PrefixStore>("partita", base);
  s.base = base;
  try {
    s.group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", base), env.rank, env.world_size, s.gloo_options());
  } catch (const std::exception& e) {
    PARTITA_FAIL("rank ", env.rank, ": the ", env.world_size, " ranks did not all join the process group at ",
                 s.where(), " within ", env.timeout.value(), " s: ", first_line(e),
                 "; start every rank (same WORLD_SIZE) and check the others' errors");
  }
  for (int r = 0; r < env.world_size; ++r) s.world_ranks.push_back(r);
  s.world_memory =
      s.share_memory<detail::SharedMemoryExchange>("world", s.world_ranks, [](int members, std::string& why) {
        return detail::SharedMemoryExchange::create(members, detail::SharedMemoryExchange::kDefaultSlotBytes,
                                                    why);
      });
  s.mailbox = s.share_memory<detail::SharedMemoryMailbox>(
      "messages", s.world_ranks, [](int members, std::string& why) {
        return detail::SharedMemoryMailbox::create(
            members, detail::SharedMemoryMailbox::default_ring_bytes(members), why);
      });
}

DistributedGroup::~DistributedGroup() = default;

int DistributedGroup::rank() const { return impl_->env.rank; }
int DistributedGroup::world_size() const { return impl_->env.world_size; }

void DistributedGroup::mark_step(int step) {
  try {
    impl_->store->set("step/" + std::to_string(impl_->env.rank), bytes_of(std::to_string(step)));
  } catch (const std::exception& e) {
    impl_->fail(step, "marking progress", e);
  }
}

namespace {

// Sums `t` (contiguous, on the CPU) over the exchange's members in place: every member adds the members'
// chunks in member order, so every member gets the same bits.
void sum_through(detail::SharedMemoryExchange& memory, torch::Tensor& t, std::chrono::milliseconds timeout) {
  PARTITA_ASSERT(t.is_contiguous() && t.device().is_cpu(),
                 "all-reduce of a non-contiguous or non-CPU tensor");
  const auto element = static_cast<size_t>(t.element_size());
  torch::Tensor flat = t.view({-1});
  memory.exchange(t.data_ptr(), static_cast<size_t>(t.numel()) * element,
                  std::chrono::steady_clock::now() + timeout,
                  [&](size_t offset, size_t length, const std::vector<const uint8_t*>& chunks) {
                    if (length == 0) return;
                    const auto count = static_cast<int64_t>(length / element);
                    torch::Tensor out = flat.narrow(0, static_cast<int64_t>(offset / element), count);
                    const auto chunk = [&](size_t m) {
                      return torch::from_blob(const_cast<uint8_t*>(chunks[m]), {count}, t.options());
                    };
                    out.copy_(chunk(0));
                    for (size_t m = 1; m < chunks.size(); ++m) out.add_(chunk(m));
                  });
}

}  // namespace

bool DistributedGroup::shares_memory() const { return impl_->world_memory != nullptr; }

bool DistributedGroup::messages_share_memory() const { return impl_->mailbox != nullptr; }

bool DistributedGroup::subgroup_shares_memory(int subgroup) const {
  return impl_->subgroup_memory.at(static_cast<size_t>(subgroup)) != nullptr;
}

void DistributedGroup::allreduce_sum(std::vector<torch::Tensor>& tensors, int step, const std::string& what) {
  Impl& s = *impl_;
  if (s.world_memory) {
    try {
      for (auto& t : tensors) sum_through(*s.world_memory, t, s.timeout);
    } catch (const detail::PeerLost& lost) {
      s.fail_shared(step, what, lost, s.world_ranks);
    }
    return;
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      works.push_back(s.group->allreduce(one));
    }
    for (auto& w : works) w->wait(s.timeout);
  } catch (const std::exception& e) {
    s.fail(step, what, e);
  }
}

int DistributedGroup::add_subgroup(const std::vector<int>& ranks) {
  Impl& s = *impl_;
  const auto me = std::find(ranks.begin(), ranks.end(), s.env.rank);
  PARTITA_CHECK(me != ranks.end() && std::is_sorted(ranks.begin(), ranks.end()) &&
                    std::adjacent_find(ranks.begin(), ranks.end()) == ranks.end() &&
                    ranks.back() < s.env.world_size,
                "rank ", s.env.rank, ": a subgroup needs distinct ascending ranks below ", s.env.world_size,
                " including this one");
  std::string name = "sub";
  for (int r : ranks) name += "-" + std::to_string(r);
  // A second subgroup over the same ranks gets a store prefix of its own.
  name += "/" + std::to_string(std::count(s.subgroup_ranks.begin(), s.subgroup_ranks.end(), ranks));
  try {
    s.subgroups.push_back(c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo/" + name, s.base), static_cast<int>(me - ranks.begin()),
        static_cast<int>(ranks.size()), s.gloo_options()));
  } catch (const std::exception& e) {
    s.fail(-1, "joining the group of ranks " + name, e);
  }
  s.subgroup_ranks.push_back(ranks);
  s.subgroup_memory.push_back(
      s.share_memory<detail::SharedMemoryExchange>(name, ranks, [](int members, std::string& why) {
        return detail::SharedMemoryExchange::create(members, detail::SharedMemoryExchange::kDefaultSlotBytes,
                                                    why);
      }));
  return static_cast<int>(s.subgroups.size()) - 1;
}

std::vector<torch::Tensor> DistributedGroup::all_gather(int subgroup, const torch::Tensor& tensor, int step,
                                                        const std::string& what) {
  return gather(subgroup, nullptr, tensor, nullptr, step, what);
}

std::vector<torch::Tensor> DistributedGroup::all_gather_tagged(int subgroup, uint64_t tag,
                                                               const torch::Tensor& tensor,
                                                               std::vector<uint64_t>& tags, int step,
                                                               const std::string& what) {
  return gather(subgroup, &tag, tensor, &tags, step, what);
}

std::vector<torch::Tensor> DistributedGroup::gather(int subgroup, const uint64_t* tag,
                                                    const torch::Tensor& tensor, std::vector<uint64_t>* tags,
                                                    int step, const std::string& what) {
  Impl& s = *impl_;
  PARTITA_ASSERT(subgroup >= 0 && static_cast<size_t>(subgroup) < s.subgroups.size(), "no subgroup ",
                 subgroup);
  PARTITA_ASSERT(tensor.device().is_cpu(), "all-gather of a non-CPU tensor");
  const std::vector<int>& ranks = s.subgroup_ranks[static_cast<size_t>(subgroup)];
  const size_t size = ranks.size();
  // A member's message: its tag (when there is one), then its tensor's bytes.
  const size_t tag_bytes = tag != nullptr ? sizeof *tag : 0;
  const torch::Tensor in = tensor.contiguous();
  const size_t bytes = static_cast<size_t>(in.numel()) * in.element_size();
  if (tags != nullptr) tags->assign(size, 0);
  if (auto& memory = s.subgroup_memory[static_cast<size_t>(subgroup)]) {
    const auto me = static_cast<size_t>(memory->member());
    std::vector<at::Tensor> out;
    for (size_t m = 0; m < size; ++m) out.push_back(m == me ? in : torch::empty_like(in));
    if (tags != nullptr) (*tags)[me] = *tag;
    try {
      memory->exchange(
          {{tag, tag_bytes}, {in.data_ptr(), bytes}}, std::chrono::steady_clock::now() + s.timeout,
          [&](size_t offset, size_t length, const std::vector<const uint8_t*>& chunks) {
            for (size_t m = 0; m < size; ++m) {
              if (m == me) continue;
              const uint8_t* from = chunks[m];
              size_t at = offset;
              size_t left = length;
              if (at < tag_bytes) {  // part of the tag
                const size_t n = std::min(left, tag_bytes - at);
                std::memcpy(reinterpret_cast<uint8_t*>(&(*tags)[m]) + at, from, n);
                from += n;
                at += n;
                left -= n;
              }
              if (left > 0)
                std::memcpy(static_cast<uint8_t*>(out[m].data_ptr()) + (at - tag_bytes), from, left);
            }
          });
    } catch (const detail::PeerLost& lost) {
      s.fail_shared(step, what, lost, ranks);
    }
    return out;  // this rank's own is its input, not a copy
  }
  // Through Gloo: one message of tag and bytes per member.
  torch::Tensor message = in;
  if (tag != nullptr) {
    message = torch::empty({static_cast<int64_t>(tag_bytes + bytes)}, torch::kUInt8);
    std::memcpy(message.data_ptr(), tag, tag_bytes);
    if (bytes > 0) std::memcpy(message.data_ptr<uint8_t>() + tag_bytes, in.data_ptr(), bytes);
  }
  std::vector<std::vector<at::Tensor>> got(1);
  for (size_t r = 0; r < size; ++r) got[0].push_back(torch::empty_like(message));
  try {
    std::vector<at::Tensor> sent{message};
    s.subgroups[static_cast<size_t>(subgroup)]->allgather(got, sent)->wait(s.timeout);
  } catch (const std::exception& e) {
    s.fail(step, what, e);
  }
  if (tag == nullptr) return got[0];
  std::vector<torch::Tensor> out;
  for (size_t m = 0; m < size; ++m) {
    std::memcpy(&(*tags)[m], got[0][m].data_ptr(), tag_bytes);
    out.push_back(torch::empty_like(in));
    if (bytes > 0) std::memcpy(out.back().data_ptr(), got[0][m].data_ptr<uint8_t>() + tag_bytes, bytes);
  }
  return out;
}

void DistributedGroup::barrier(const std::string& what) {
  std::vector<torch::Tensor> token{torch::zeros({1})};
  allreduce_sum(token, -1, what);
}

void DistributedGroup::send(const torch::Tensor& tensor, int to, int tag, const std::string& what) {
  Impl& s = *impl_;
  if (s.mailbox) {
    PARTITA_ASSERT(tensor.device().is_cpu(), "a message of a non-CPU tensor");
    auto kept = std::make_shared<torch::Tensor>(tensor.contiguous());
    try {
      s.mailbox->send(to, tag, kept->data_ptr(), static_cast<size_t>(kept->numel()) * kept->element_size(),
                      kept);
    } catch (const detail::PeerLost& lost) {
      s.fail_message(to, what, lost);
    }
    s.pending_sends.push_back({c10::intrusive_ptr<c10d::Work>(), to, what});
    return;
  }
  try {
    std::vector<at::Tensor> one{tensor.contiguous()};
    s.pending_sends.push_back({s.group->send(one, to, tag), to, what});
  } catch (const std::exception& e) {
    s.fail_peer(to, what, e);
  }
}

void DistributedGroup::wait_sends() {
  Impl& s = *impl_;
  // Cleared first: after a failure the posted messages are abandoned with the step.
  std::vector<Impl::PendingSend> pending = std::move(s.pending_sends);
  s.pending_sends.clear();
  if (s.mailbox) {
    try {
      s.mailbox->wait_delivered(std::chrono::steady_clock::now() + s.timeout);
    } catch (const detail::PeerLost& lost) {
      // Named after the last message to that rank (as Gloo's wait names the message it waited for).
      std::string what = "sending to rank " + std::to_string(lost.member);
      for (const auto& p : pending)
        if (p.to == lost.member) what = p.what;
      s.fail_message(lost.member, what, lost);
    }
    return;
  }
  for (auto& p : pending) {
    try {
      p.work->wait(s.timeout);
    } catch (const std::exception& e) {
      s.fail_peer(p.to, p.what, e);
    }
  }
}

void DistributedGroup::receive(torch::Tensor& into, int from, int tag, const std::string& what) {
  Impl& s = *impl_;
  if (s.mailbox) {
    PARTITA_ASSERT(into.is_contiguous() && into.device().is_cpu(), "a message into a non-contiguous tensor");
    try {
      s.mailbox->receive(from, tag, into.data_ptr(), static_cast<size_t>(into.numel()) * into.element_size(),
                         std::chrono::steady_clock::now() + s.timeout);
    } catch (const detail::PeerLost& lost) {
      s.fail_message(from, what, lost);
    } catch (const Error& e) {
      PARTITA_FAIL(what, ": ", e.what());
    }
    return;
  }
  try {
    std::vector<at::Tensor> one{into};
    s.group->recv(one, from, tag)->wait(s.timeout);
  } catch (const std::exception& e) {
    s.fail_peer(from, what, e);
  }
}

std::vector<std::string> DistributedGroup::gather_to_rank0(const std::string& key, const std::string& text) {
  return impl_->gather_to_rank0(key, text);
}

std::string DistributedGroup::broadcast_from_rank0(const std::string& key, const std::string& text,
                                                   std::optional<Seconds> timeout) {
  return impl_->broadcast_from_rank0(
      key, text,
      timeout ? std::chrono::milliseconds(static_cast<int64_t>(timeout->value() * 1e3)) : impl_->timeout);
}

DistributedGroup::StoreChannel::StoreChannel() : impl_(std::make_unique<Impl>()) {}
DistributedGroup::StoreChannel::~StoreChannel() = default;

std::vector<std::string> DistributedGroup::StoreChannel::gather_to_rank0(const std::string& key,
                                                                         const std::string& text) {
  return impl_->gather_to_rank0(key, text);
}

std::unique_ptr<DistributedGroup::StoreChannel> DistributedGroup::open_store_channel() const {
  std::unique_ptr<StoreChannel> channel(new StoreChannel());
  Impl& c = *channel->impl_;
  c.env = impl_->env;
  c.timeout = impl_->timeout;
  c.store = c10::make_intrusive<c10d::PrefixStore>("partita", c.connect(/*host=*/false));
  return channel;
}

ClockOffset DistributedGroup::clock_offset_to_rank0(const std::function<double()>& now_us, int rounds) {
  Impl& s = *impl_;
  const auto key = [](int r, int k, const char* what) {
    return "clock/" + std::to_string(r) + "/" + std::to_string(k) + "/" + what;
  };
  ClockOffset best;
  if (s.env.rank == 0) {
    for (int r = 1; r < s.env.world_size; ++r) {
      for (int k = 0; k < rounds; ++k) {
        try {
          s.store->wait({key(r, k, "ask")}, s.timeout);
          s.store->set(key(r, k, "answer"), bytes_of(std::to_string(now_us())));
        } catch (const std::exception& e) {
          s.fail_peer(r, "aligning clocks", e);
        }
      }
    }
    return best;
  }
  for (int k = 0; k < rounds; ++k) {
    try {
      const double before = now_us();
      s.store->set(key(s.env.rank, k, "ask"), bytes_of("?"));
      s.store->wait({key(s.env.rank, k, "answer")}, s.timeout);
      const double after = now_us();
      const double theirs = std::stod(string_of(s.store->get(key(s.env.rank, k, "answer"))));
      if (k == 0 || after - before < best.round_trip_us)
        best = ClockOffset{theirs - (before + after) / 2, after - before};
    } catch (const std::exception& e) {
      s.fail_peer(0, "aligning clocks", e);
    }
  }
  return best;
}

void DistributedGroup::report_failure(const std::string& message) noexcept {
  try {
    impl_->store->set("failed/" + std::to_string(impl_->env.rank), bytes_of(message));
  } catch (...) {  // best effort: the store may be gone already
  }
}

}  // namespace partita
