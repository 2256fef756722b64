#include "partita/runtime/stage_transport.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include <torch/torch.h>

#include "partita/core/error.h"
#include "partita/runtime/distributed_reducer.h"

namespace partita {

namespace {

constexpr int64_t kMaxDims = 8;
constexpr int64_t kFields = 3 + kMaxDims;  // kind, dtype or scalar, rank, sizes
enum Kind : int64_t {
  kNoneValue = 0,
  kTensorValue = 1,
  kIntValue = 2,
  kDoubleValue = 3,
  kBoolValue = 4,
  kPickledValue = 5,  // a list or tuple: its bytes in TorchScript's pickle format (f[1] of them)
};

std::string device_list(const std::vector<std::string>& devices) {
  std::string out;
  for (const auto& d : devices) out += (out.empty() ? "" : ",") + d;
  return out;
}

// Undefined tensors do not pickle, yet a list's gradient is undefined where an element got none. Inside a
// list or tuple they travel as None, a list of tensors then as a list of Optional[Tensor], and the header
// says so (f[2] = 1) so that the receiver makes them undefined tensors again. Other tensors go detached and
// on the host.
c10::IValue undefined_as_none(const c10::IValue& iv, bool& found) {
  if (iv.isTensor()) {
    const torch::Tensor& t = iv.toTensor();
    if (t.defined()) return t.detach().to(torch::kCPU);
    found = true;
    return c10::IValue();
  }
  if (iv.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& e : iv.toTupleRef().elements()) elements.push_back(undefined_as_none(e, found));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (!iv.isList()) return iv;
  const c10::List<c10::IValue> list = iv.toList();
  bool here = false;
  std::vector<c10::IValue> elements;
  for (size_t i = 0; i < list.size(); ++i) elements.push_back(undefined_as_none(list.get(i), here));
  found = found || here;
  c10::impl::GenericList out(here ? c10::OptionalType::create(list.elementType()) : list.elementType());
  for (auto& e : elements) out.push_back(std::move(e));
  return out;
}

c10::IValue none_as_undefined(const c10::IValue& iv) {
  if (iv.isNone()) return torch::Tensor();
  if (iv.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& e : iv.toTupleRef().elements()) elements.push_back(none_as_undefined(e));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (!iv.isList()) return iv;
  const c10::List<c10::IValue> list = iv.toList();
  const auto optional = list.elementType()->cast<c10::OptionalType>();
  c10::impl::GenericList out(optional ? optional->getElementType() : list.elementType());
  for (size_t i = 0; i < list.size(); ++i) out.push_back(none_as_undefined(list.get(i)));
  return out;
}

}  // namespace

int64_t stage_message_header_length(size_t count) { return 1 + kFields * static_cast<int64_t>(count); }

EncodedValues encode_stage_message(const std::vector<c10::IValue>& values) {
  EncodedValues out;
  out.header = torch::zeros({stage_message_header_length(values.size())}, torch::kInt64);
  int64_t* header = out.header.data_ptr<int64_t>();
  std::vector<torch::Tensor> tensors;
  int64_t bytes = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    int64_t* f = header + 1 + kFields * static_cast<int64_t>(i);
    const c10::IValue& v = values[i];
    if (v.isNone() || (v.isTensor() && !v.toTensor().defined())) {
      f[0] = kNoneValue;
    } else if (v.isTensor()) {
      const torch::Tensor t = v.toTensor().detach().to(torch::kCPU).contiguous();
      PARTITA_CHECK(t.dim() <= kMaxDims, "a tensor of rank ", t.dim(),
                    " crosses a pipeline cut between processes (at most ", kMaxDims,
                    " dimensions travel); cut the model elsewhere");
      f[0] = kTensorValue;
      f[1] = static_cast<int64_t>(t.scalar_type());
      f[2] = t.dim();
      for (int64_t d = 0; d < t.dim(); ++d) f[3 + d] = t.size(d);
      bytes += t.numel() * static_cast<int64_t>(t.element_size());
      tensors.push_back(t);
    } else if (v.isInt()) {
      f[0] = kIntValue;
      f[1] = v.toInt();
    } else if (v.isDouble()) {
      f[0] = kDoubleValue;
      f[1] = std::bit_cast<int64_t>(v.toDouble());
    } else if (v.isBool()) {
      f[0] = kBoolValue;
      f[1] = v.toBool() ? 1 : 0;
    } else if (v.isList() || v.isTuple()) {
      // Pickled with its element types (an int[] arrives as an int[], as the ops that read it need).
      bool undefined = false;
      const std::vector<char> pickled = torch::pickle_save(undefined_as_none(v, undefined));
      f[2] = undefined ? 1 : 0;
      torch::Tensor t = torch::empty({static_cast<int64_t>(pickled.size())}, torch::kUInt8);
      if (!pickled.empty()) std::memcpy(t.data_ptr(), pickled.data(), pickled.size());
      f[0] = kPickledValue;
      f[1] = t.numel();
      bytes += t.numel();
      tensors.push_back(t);
    } else {
      PARTITA_FAIL(
          "a value of type ", v.tagKind(),
          " crosses between processes, where only tensors, numbers and lists or tuples of them travel; "
          "cut the model elsewhere");
    }
  }
  header[0] = bytes;
  out.payload = torch::empty({bytes}, torch::kUInt8);
  auto* dst = out.payload.data_ptr<uint8_t>();
  for (const auto& t : tensors) {
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    if (n > 0) std::memcpy(dst, t.data_ptr(), n);
    dst += n;
  }
  return out;
}

std::vector<c10::IValue> decode_stage_message(const torch::Tensor& header, const torch::Tensor& payload) {
  PARTITA_CHECK(
      header.scalar_type() == torch::kInt64 && header.numel() >= 1 && (header.numel() - 1) % kFields == 0,
      "malformed pipeline message header of ", header.numel(), " elements");
  const int64_t* h = header.data_ptr<int64_t>();
  PARTITA_CHECK(payload.numel() == h[0], "pipeline message payload has ", payload.numel(),
                " bytes, its header says ", h[0]);
  const int64_t count = (header.numel() - 1) / kFields;
  const uint8_t* src = payload.numel() > 0 ? payload.data_ptr<uint8_t>() : nullptr;
  int64_t offset = 0;
  std::vector<c10::IValue> values;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t* f = h + 1 + kFields * i;
    switch (f[0]) {
      case kNoneValue:
        values.emplace_back();
        break;
      case kTensorValue: {
        PARTITA_CHECK(f[2] >= 0 && f[2] <= kMaxDims, "malformed pipeline message: rank ", f[2]);
        const std::vector<int64_t> sizes(f + 3, f + 3 + f[2]);
        torch::Tensor t =
            torch::empty(sizes, torch::TensorOptions().dtype(static_cast<c10::ScalarType>(f[1])));
        const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
        PARTITA_CHECK(offset + n <= h[0], "malformed pipeline message: tensor ", i,
                      " passes the payload's end");
        if (n > 0) std::memcpy(t.data_ptr(), src + offset, static_cast<size_t>(n));
        offset += n;
        values.emplace_back(std::move(t));
        break;
      }
      case kIntValue:
        values.emplace_back(f[1]);
        break;
      case kDoubleValue:
        values.emplace_back(std::bit_cast<double>(f[1]));
        break;
      case kBoolValue:
        values.emplace_back(f[1] != 0);
        break;
      case kPickledValue: {
        PARTITA_CHECK(f[1] >= 0 && offset + f[1] <= h[0], "malformed pipeline message: value ", i,
                      " passes the payload's end");
        c10::IValue v = torch::pickle_load(std::vector<char>(src + offset, src + offset + f[1]));
        values.push_back(f[2] == 1 ? none_as_undefined(v) : std::move(v));
        offset += f[1];
        break;
      }
      default:
        PARTITA_FAIL("malformed pipeline message: value kind ", f[0]);
    }
  }
  return values;
}

int stage_message_tag(const StageMessage& message, int part) {
  const int from = message.from, to = message.to, microbatch = message.microbatch;
  PARTITA_CHECK(from >= 0 && from < 256 && to >= 0 && to < 256 && microbatch >= 0 && microbatch < 4096,
                "plans across processes support up to 256 stages and 4096 microbatches, got stage ",
                std::max(from, to), " and microbatch ", microbatch, "; plan fewer");
  const int direction = message.backward ? 1 : 0;
  if (message.transfer < 0) return (((from * 256 + to) * 4096 + microbatch) * 2 + direction) * 2 + part;
  // Branch transfers: tags from 2^30 on (a pipeline's stay below).
  PARTITA_CHECK(message.transfer < 65536, "branch plans across processes support up to 65536 values handed ",
                "between devices, got ", message.transfer + 1, "; plan fewer branches or run in one process");
  return (1 << 30) + (((message.transfer * 4096 + microbatch) * 2 + direction) * 2 + part);
}

DistributedStageTransport::DistributedStageTransport(DistributedGroup& group, std::vector<int> stage_ranks)
    : group_(group) {
  set_stage_ranks(std::move(stage_ranks));
}

void DistributedStageTransport::set_stage_ranks(std::vector<int> stage_ranks) {
  if (!stage_ranks.empty()) {
    PARTITA_CHECK(static_cast<int>(stage_ranks.size()) == group_.world_size(), "a pipeline across ",
                  group_.world_size(), " processes needs a rank for each of its ", group_.world_size(),
                  " stages, got ", stage_ranks.size());
    std::vector<int> sorted = stage_ranks;
    std::sort(sorted.begin(), sorted.end());
    for (size_t r = 0; r < sorted.size(); ++r) {
      PARTITA_CHECK(sorted[r] == static_cast<int>(r),
                    "the ranks of a pipeline's stages must be a permutation of ", "0..", sorted.size() - 1,
                    ", got rank ", sorted[r], " where rank ", r, " belongs");
    }
  }
  stage_ranks_ = std::move(stage_ranks);
}

int DistributedStageTransport::rank_of(int stage) const {
  if (stage_ranks_.empty()) return stage;
  PARTITA_CHECK(stage >= 0 && stage < static_cast<int>(stage_ranks_.size()), "stage ", stage,
                " is not one of the pipeline's ", stage_ranks_.size());
  return stage_ranks_[static_cast<size_t>(stage)];
}

int DistributedStageTransport::stage_run_by(int rank) const {
  if (stage_ranks_.empty()) return rank;
  const auto at = std::find(stage_ranks_.begin(), stage_ranks_.end(), rank);
  PARTITA_CHECK(at != stage_ranks_.end(), "rank ", rank, " runs none of the pipeline's stages");
  return static_cast<int>(at - stage_ranks_.begin());
}

std::string DistributedStageTransport::describe(const StageMessage& message, bool sending) const {
  const int peer = sending ? message.to : message.from;
  return std::string(sending ? "sending " : "receiving ") + (message.backward ? "gradients" : "activations") +
         " of microbatch " + std::to_string(message.microbatch) + (sending ? " to" : " from") + " rank " +
         std::to_string(rank_of(peer)) + " (stage " + std::to_string(peer) + ")";
}

void DistributedStageTransport::begin_step(int step) { apply_fault_hooks(group_.rank(), step); }

void DistributedStageTransport::send(const std::vector<c10::IValue>& values, const StageMessage& message) {
  const EncodedValues msg = encode_stage_message(values);
  const std::string what = describe(message, true);
  group_.send(msg.header, rank_of(message.to), stage_message_tag(message, 0), what);
  if (msg.payload.numel() > 0)
    group_.send(msg.payload, rank_of(message.to), stage_message_tag(message, 1), what);
}

std::vector<c10::IValue> DistributedStageTransport::receive(const StageMessage& message, size_t count) {
  const std::string what = describe(message, false);
  torch::Tensor header = torch::empty({stage_message_header_length(count)}, torch::kInt64);
  group_.receive(header, rank_of(message.from), stage_message_tag(message, 0), what);
  const int64_t bytes = header.data_ptr<int64_t>()[0];
  PARTITA_CHECK(bytes >= 0, what, ": malformed header (", bytes, " payload bytes)");
  torch::Tensor payload = torch::empty({bytes}, torch::kUInt8);
  if (bytes > 0) group_.receive(payload, rank_of(message.from), stage_message_tag(message, 1), what);
  return decode_stage_message(header, payload);
}

void DistributedStageTransport::finish_step() { group_.wait_sends(); }

std::vector<int> stage_ranks_by_device(const Plan& plan,
                                       const std::vector<std::vector<std::string>>& rank_devices) {
  const std::vector<int> ranks = stages_on_device_lists(plan, rank_devices);
  for (size_t k = 0; k < ranks.size(); ++k) {
    PARTITA_CHECK(
        ranks[k] >= 0, "stage ", k, " of the plan runs on ", device_list(plan.stage_devices()[k]),
        " but no process of the job holds those devices (each keeps the devices of its stage in the "
        "plan the job started with); run the plan as a job of its own");
  }
  PARTITA_CHECK(ranks.size() == rank_devices.size(), "the plan has ", ranks.size(),
                " stage(s) but the job runs ", rank_devices.size(),
                " process(es), one per stage; run the plan as a job of its own");
  return ranks;
}

}  // namespace partita
