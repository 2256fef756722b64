# torch.nn's fused inference kernels (what a transformer layer or nn.MultiheadAttention traces to in eval mode
# under no_grad) get a FLOP estimate: the same layer traced in training mode runs the unfused ops, and
# partita's totals for the two must agree within 2% (same weights, same shapes; the encoder's training-mode
# trace also runs its dropouts, p = 0, which the kernel does not: 1.3% more); the fused graph lists no op
# without an estimate.
source "$(dirname "$0")/lib.sh"
"$PYTHON" - "$WORK" <<'PY'
import sys, torch, torch.nn as nn
w = sys.argv[1]
torch.manual_seed(0)
class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]
layers = {
    "encoder": (nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), torch.randn(2, 10, 32)),
    "attention": (Attention(), torch.randn(2, 10, 32)),
}
for name, (layer, x) in layers.items():
    with torch.no_grad():
        torch.jit.trace(layer.eval(), (x,), check_trace=False).save(f"{w}/{name}_a.pt")
    torch.jit.trace(layer.train(), (x,), check_trace=False).save(f"{w}/{name}_b.pt")
PY
kernels=aten::_transformer_encoder_layer_fwd,aten::_native_multi_head_attention
flops_ratio encoder 2x10x32 "$kernels" 0.98 1.02
flops_ratio attention 2x10x32 "$kernels" 0.98 1.02
finish
