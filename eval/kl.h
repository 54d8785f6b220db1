/* How far a quantized model's next-token distribution is from the full-precision one:
 * KL(p_reference ‖ p_model), in nats. Meaningful where perplexity is not (synthetic models with
 * random weights have no language to predict), and more sensitive: it sees every probability,
 * not only the target's. */
#ifndef ROTQ_EVAL_KL_H
#define ROTQ_EVAL_KL_H

/* KL(softmax(reference) ‖ softmax(logits)) of two rows of vocab logits, by log-sum-exp in double. */
double token_kl(const double *reference, const double *logits, int vocab);

#endif
