"""Stage `tokenizer`: a CLIP-style byte-level BPE trained from scratch on the train captions
(pdd/train/tokenizer.py), plus a CLIPImageProcessor config with our own image statistics.
Writes models/tokenizer (loads with `CLIPTokenizerFast.from_pretrained`) and metrics/tokenizer.json."""
from pdd.build.runner import Outcome, run
from pdd.train import tokenizer


def check(ctx):
    tokenizer.load_train(ctx.deps["export"])


def compute(ctx):
    s = tokenizer.train_tokenizer(ctx.deps["export"], ctx.outs["tokenizer"], ctx.cfg)
    return Outcome(metrics=s, extra={"summary": s},
                   summary=f"tokenizer: {s['vocab_size']} tokens ({s['merges']} merges) from {s['train_captions']} "
                           f"train captions")


if __name__ == "__main__":
    raise SystemExit(run("tokenizer"))
