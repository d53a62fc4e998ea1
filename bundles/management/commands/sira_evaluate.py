import logging
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from bundles.sira.evaluation import evaluate
from bundles.sira.synthetic import PATTERNS, TrafficMix, generate_traffic
from policies.models import Policy

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Generate labelled synthetic traffic (honest merchants and agents plus injected fraud patterns), score "
            "it in memory with the fraud scorer and the country's thresholds, and print precision, recall and "
            "false-positive rate overall and per pattern. A transaction counts as flagged when its bundle lands in "
            "pending_review or quarantined. The same seed and options always print the same numbers.")

    def add_arguments(self, parser):
        defaults = TrafficMix()
        parser.add_argument("--seed", type=int, default=7, help="Random seed of the traffic (default: 7).")
        parser.add_argument("--merchants", type=int, default=defaults.merchants,
                            help=f"Honest merchant terminals (default: {defaults.merchants}).")
        parser.add_argument("--agents", type=int, default=defaults.agents,
                            help=f"Honest agent phones (default: {defaults.agents}).")
        parser.add_argument("--days", type=int, default=defaults.days,
                            help=f"Days of traffic, at least 2 (default: {defaults.days}).")
        parser.add_argument("--incidents", type=int, default=10,
                            help="Incidents of each fraud pattern (default: 10).")
        parser.add_argument("--country", default="SN",
                            help="Country whose policy thresholds and time zone apply (default: SN). The traffic's "
                                 "amounts are XOF sized for the SN limits, so another country's currency and "
                                 "limits are not modelled.")
        parser.add_argument("--scorer", default="bundles.sira.scorer.RuleScorer",
                            help="Dotted path of the scorer class to measure (default: the in-process rules).")

    def handle(self, *args, seed, merchants, agents, days, incidents, country, scorer, **options):
        if days < 2:
            raise CommandError(f"--days must be at least 2, got {days}: incidents start on the second day.")
        if min(merchants, agents, incidents) < 0 or merchants + agents == 0:
            raise CommandError("--merchants, --agents and --incidents must not be negative, and some devices "
                               "must be honest.")
        policy = Policy.objects.filter(country=country).first()
        if policy is None:
            raise CommandError(f"No policy for country {country!r}; create it, or pass --country with a seeded one.")

        started = time.perf_counter()
        mix = TrafficMix(merchants=merchants, agents=agents, days=days,
                         incidents={pattern: incidents for pattern in PATTERNS})
        traffic = generate_traffic(seed, mix)
        result = evaluate(traffic, import_string(scorer)(), policy)
        elapsed = time.perf_counter() - started

        write = self.stdout.write
        write(f"Synthetic traffic: seed {seed}, {merchants} merchants, {agents} agents, {days} days, "
              f"{incidents} incidents per pattern; thresholds of {policy.country}: review at "
              f"{policy.sira_review_threshold}, quarantine at {policy.sira_quarantine_threshold}.")
        write(f"Bundles: {len(traffic.bundles)} ({result.bundles['accepted']} accepted, "
              f"{result.bundles['pending_review']} pending_review, {result.bundles['quarantined']} quarantined); "
              f"transactions: {result.transactions} ({result.honest.transactions} honest, "
              f"{result.fraud.transactions} fraudulent).")
        write("")
        write(f"{'pattern':<18}{'fraud tx':>9}{'flagged':>9}{'recall':>9}{'quarantined':>13}{'precision':>11}")
        for pattern in PATTERNS:
            counts = result.by_pattern[pattern]
            write(f"{pattern:<18}{counts.transactions:>9}{counts.flagged:>9}{result.pattern_recall(pattern):>9.1%}"
                  f"{counts.quarantined:>13}{result.precision(pattern):>11.1%}")
        write(f"{'all fraud':<18}{result.fraud.transactions:>9}{result.fraud.flagged:>9}{result.recall:>9.1%}"
              f"{result.fraud.quarantined:>13}{result.precision():>11.1%}")
        write("")
        write(f"Honest transactions flagged (false-positive rate): {result.honest.flagged} of "
              f"{result.honest.transactions} = {result.false_positive_rate:.2%}")
        write(f"Precision {result.precision():.1%}, recall {result.recall:.1%}, "
              f"false-positive rate {result.false_positive_rate:.2%}.")
        per_tx = result.scoring_seconds / result.transactions * 1e6 if result.transactions else 0.0
        write(f"Scoring took {per_tx:.0f} microseconds per transaction (in memory); the whole run {elapsed:.1f} s.")
        logger.info("sira_evaluate seed=%s recall=%.4f false_positive_rate=%.4f", seed, result.recall,
                    result.false_positive_rate)
