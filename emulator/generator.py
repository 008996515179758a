"""A deterministic, seedable generator of Pinterest-like posts with the seed pipeline's dirt.

A post is three records sharing ``ind``: a pin, a geo and a user record, in the raw shapes of
:mod:`schemas.contracts`. The dirt is the seed's: placeholder values instead of data, follower
counts as "26k"/"6M" text, "Local save in " prefixes, posts sent more than once, and (optionally)
records that land on another kind's topic.

Memory is bounded: repeats are drawn from the last ``repeat_window`` posts only, so an endless
stream keeps a fixed number of posts (runs shorter than the window behave as if it were unbounded).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Iterator

from schemas.contracts import PLACEHOLDERS, SAVE_LOCATION_PREFIX

CATEGORIES = (
    "art", "beauty", "christmas", "diy-and-crafts", "education", "event-planning", "finance",
    "home-decor", "mens-fashion", "quotes", "tattoos", "travel", "vehicles",
)
COUNTRIES = (
    "Albania", "Algeria", "American Samoa", "Angola", "Antarctica (the territory South of 60 deg S)",
    "Armenia", "Aruba", "Azerbaijan", "Bangladesh", "Bermuda", "Bulgaria", "Cocos (Keeling) Islands",
    "Costa Rica", "Cote d'Ivoire", "Dominican Republic", "Egypt", "Fiji", "Gabon", "Guernsey", "Iceland",
    "India", "Liberia", "Maldives", "Mexico", "Nepal", "Saint Barthelemy", "Tuvalu", "United Kingdom",
)
FIRST_NAMES = ("Abigail", "Andrew", "Alexander", "Christopher", "Dylan", "Kristen", "Michelle", "Rachel",
               "Thomas", "Wendy", "Brian", "Daniel", "Jonathan", "Kimberly", "Lisa", "Robert")
LAST_NAMES = ("Ali", "Martin", "Gonzalez", "Hall", "Mcbride", "Roberts", "Simmons", "Smith", "Turner",
              "Walker", "Yang", "Zimmerman", "Harris", "Lopez")
WORDS = ("Homemade", "Christmas", "Vintage", "Budget", "Easy", "DIY", "Travel", "Tattoo", "Quotes",
         "Ideas", "Guide", "Best", "Modern", "Cars", "Art", "Fashion", "Decor", "Recipes", "Tips")
MEDIA = ("image", "video", "multi-video(story page format)")


@dataclass(frozen=True)
class Post:
    ind: int
    pin: dict
    geo: dict
    user: dict


@dataclass(frozen=True)
class Dirt:
    """How dirty the generated data is (probabilities per post)."""

    placeholder_rate: float = 0.05   # a pin made of the seed's placeholder values
    repeat_rate: float = 0.15        # a post sent again, unchanged
    misrouted_rate: float = 0.0      # a pin or geo record sent to the user topic instead


def _follower_count(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return str(rng.randint(0, 999))
    if roll < 0.9:
        return f"{rng.randint(1, 999)}k"
    return f"{rng.randint(1, 9)}M"


def _timestamp(rng: random.Random, first_year: int, last_year: int) -> str:
    start = dt.datetime(first_year, 1, 1)
    span = (dt.datetime(last_year + 1, 1, 1) - start).total_seconds()
    return (start + dt.timedelta(seconds=rng.randrange(int(span)))).strftime("%Y-%m-%d %H:%M:%S")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_post(rng: random.Random, ind: int, dirt: Dirt) -> Post:
    category = rng.choice(CATEGORIES)
    pin = {
        "index": ind,
        "unique_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "title": _words(rng, rng.randint(2, 8)),
        "description": _words(rng, rng.randint(5, 30)) + ".",
        "poster_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        "follower_count": _follower_count(rng),
        "tag_list": ",".join(_words(rng, 2) for _ in range(rng.randint(1, 9))),
        "is_image_or_video": rng.choice(MEDIA),
        "image_src": f"https://i.pinimg.com/originals/{rng.getrandbits(128):032x}.jpg",
        "downloaded": 1,
        "save_location": f"{SAVE_LOCATION_PREFIX}/data/{category}",
        "category": category,
    }
    if rng.random() < dirt.placeholder_rate:
        # The seed's placeholders (the contract's list, first spelling of each).
        pin.update({field: values[0] for field, values in PLACEHOLDERS.items()},
                   downloaded=0, is_image_or_video="multi-video(story page format)")
    geo = {
        "ind": ind,
        "timestamp": _timestamp(rng, 2018, 2022),
        "latitude": round(rng.uniform(-90, 90), 4),
        "longitude": round(rng.uniform(-180, 180), 4),
        "country": rng.choice(COUNTRIES),
    }
    user = {
        "ind": ind,
        "first_name": rng.choice(FIRST_NAMES),
        "last_name": rng.choice(LAST_NAMES),
        "age": rng.randint(18, 70),
        "date_joined": _timestamp(rng, 2015, 2022),
    }
    return Post(ind, pin, geo, user)


def generate(posts: int | None, seed: int = 0, dirt: Dirt = Dirt(), first_ind: int = 1,
             repeat_window: int = 10_000) -> Iterator[tuple[str, dict]]:
    """Yield ``posts`` posts (None: without end) as (topic kind, record) messages: pin, geo, user for each.

    Each new post gets the next ``ind``; a repeat re-sends one of the last ``repeat_window`` new
    posts unchanged. The same seed always yields the same messages.
    """
    if repeat_window < 1:
        raise ValueError("repeat_window must be at least 1")
    rng = random.Random(seed)
    recent: list[Post] = []  # a ring of the last repeat_window new posts
    made = 0
    next_ind = first_ind
    remaining = posts
    while remaining is None or remaining > 0:
        if remaining is not None:
            remaining -= 1
        if recent and rng.random() < dirt.repeat_rate:
            post = recent[rng.randrange(len(recent))]
        else:
            post = make_post(rng, next_ind, dirt)
            next_ind += 1
            if len(recent) < repeat_window:
                recent.append(post)
            else:
                recent[made % repeat_window] = post
            made += 1
        misrouted = rng.random() < dirt.misrouted_rate
        if misrouted and rng.random() < 0.5:
            yield "pin", post.pin
            yield "geo", post.geo
            yield "user", post.pin  # the seed's user topic carried pin rows
        elif misrouted:
            yield "pin", post.pin
            yield "geo", post.geo
            yield "user", post.geo
        else:
            yield "pin", post.pin
            yield "geo", post.geo
            yield "user", post.user
