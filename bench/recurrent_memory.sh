#!/usr/bin/env bash
# Peak memory of recurrent layers, predicted against measured (`partita estimate ... --device cpu:0 --measure`,
# partita's counting allocator): the zoo's lstm_state and lstm, and traced nn.LSTM / nn.GRU / nn.RNN models
# (1-2 layers, one or both directions, 50 steps x batch 8 returning the layer's output; 8x20x16 classifiers
# reading the last step), inference and training. Prints one line per model and mode with the error that
# estimate reports (docs/status.md, "Recurrent layers' training memory" and "... working memory").
#   bash bench/recurrent_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build="${PARTITA_BUILD_DIR:-build}"
p="$build/apps/partita/partita"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" <<'PY'
import sys
import torch
import torch.nn as nn


class Output(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class LastStep(nn.Module):
    def __init__(self, rnn, width):
        super().__init__()
        self.rnn = rnn
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


torch.manual_seed(0)
models = {
    "lstm1": (Output(nn.LSTM(8, 32)), (50, 8, 8)),
    "lstm2_batch_first": (Output(nn.LSTM(8, 32, num_layers=2, batch_first=True)), (8, 50, 8)),
    "gru1": (Output(nn.GRU(8, 32)), (50, 8, 8)),
    "gru2": (Output(nn.GRU(8, 32, num_layers=2)), (50, 8, 8)),
    "rnn1": (Output(nn.RNN(8, 32)), (50, 8, 8)),
    "rnn2": (Output(nn.RNN(8, 32, num_layers=2)), (50, 8, 8)),
    "bilstm1": (Output(nn.LSTM(8, 32, bidirectional=True)), (50, 8, 8)),
    "bilstm2": (Output(nn.LSTM(8, 32, num_layers=2, bidirectional=True)), (50, 8, 8)),
    "gru2_classifier": (LastStep(nn.GRU(16, 64, num_layers=2, batch_first=True), 64), (8, 20, 16)),
    "rnn_classifier": (LastStep(nn.RNN(16, 64, batch_first=True), 64), (8, 20, 16)),
    "bilstm_classifier": (LastStep(nn.LSTM(16, 32, bidirectional=True, batch_first=True), 64), (8, 20, 16)),
}
with open(f"{sys.argv[1]}/list", "w") as listing:
    for name, (model, shape) in models.items():
        with torch.no_grad():
            torch.jit.trace(model.eval(), torch.randn(*shape), check_trace=False).save(f"{sys.argv[1]}/{name}.pt")
        listing.write(f"{sys.argv[1]}/{name}.pt {'x'.join(map(str, shape))}\n")
PY
{
  echo "$build/models/lstm_state.pt 4x6x8"
  echo "$build/models/lstm_state.pt 4x96x8"
  echo "$build/models/lstm.pt 8x6x8"
  cat "$work/list"
} | while read -r model input; do
  for mode in inference --train; do
    flag=""
    [ "$mode" = --train ] && flag=--train
    line=$("$p" estimate "$model" --input "$input" --device cpu:0 $flag --measure 2>&1 | grep "measured memory" || true)
    printf '%-22s %-8s %-9s %s\n' "$(basename "$model" .pt)" "$input" "${mode#--}" "${line#*memory: }"
  done
done
