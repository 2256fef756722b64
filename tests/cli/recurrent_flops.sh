# Recurrent layers (aten::lstm, aten::gru) get a FLOP estimate that matches the cells they run: the same
# weights unrolled step by step in Python with torch's own formulas (linears, chunk, sigmoid, tanh, mul,
# add; an LSTM with projections also its W_hr) and traced must give partita the same total within 1%, and the
# nn.LSTM / nn.GRU graphs list no op without an estimate.
source "$(dirname "$0")/lib.sh"
"$PYTHON" - "$WORK" <<'PY'
import sys, torch, torch.nn as nn, torch.nn.functional as F
w = sys.argv[1]
torch.manual_seed(0)

class UnrolledLSTM(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm
    def forward(self, x):  # x [batch, steps, features], batch first
        for layer in range(self.lstm.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(self.lstm, f"{n}_l{layer}")
                                      for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            h = x.new_zeros(x.shape[0], self.lstm.proj_size or self.lstm.hidden_size)
            c = x.new_zeros(x.shape[0], self.lstm.hidden_size)
            out = []
            for t in range(x.shape[1]):
                i, f, g, o = (F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                if self.lstm.proj_size:
                    h = F.linear(h, getattr(self.lstm, f"weight_hr_l{layer}"))
                out.append(h)
            x = torch.stack(out, 1)
        return x

class UnrolledGRU(nn.Module):
    def __init__(self, gru):
        super().__init__()
        self.gru = gru
    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.gru.hidden_size)
        out = []
        for t in range(x.shape[1]):
            i_r, i_z, i_n = F.linear(x[:, t], self.gru.weight_ih_l0, self.gru.bias_ih_l0).chunk(3, 1)
            h_r, h_z, h_n = F.linear(h, self.gru.weight_hh_l0, self.gru.bias_hh_l0).chunk(3, 1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
            out.append(h)
        return torch.stack(out, 1)

class First(nn.Module):  # nn.LSTM / nn.GRU return (output, state): keep the output
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
    def forward(self, x):
        return self.rnn(x)[0]

x = torch.randn(2, 10, 16)
lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True)
gru = nn.GRU(16, 32, batch_first=True)
projected = nn.LSTM(16, 32, num_layers=2, proj_size=8, batch_first=True)
for name, layer, unrolled in (("lstm", lstm, UnrolledLSTM(lstm)), ("gru", gru, UnrolledGRU(gru)),
                              ("lstm_proj", projected, UnrolledLSTM(projected))):
    with torch.no_grad():
        assert torch.allclose(First(layer)(x), unrolled(x), atol=1e-5), f"{name}: the unrolled cell differs"
    torch.jit.trace(First(layer), (x,)).save(f"{w}/{name}_a.pt")
    torch.jit.trace(unrolled, (x,)).save(f"{w}/{name}_b.pt")
PY
flops_ratio lstm 2x10x16 aten::lstm 0.99 1.01
flops_ratio gru 2x10x16 aten::gru 0.99 1.01
flops_ratio lstm_proj 2x10x16 aten::lstm 0.99 1.01
finish
