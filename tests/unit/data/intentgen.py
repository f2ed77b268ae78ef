"""A seeded intent-classification set in the shape of the public crowdsourced ones (SNIPS-like): one fixed
system prompt and short, distinct user questions, phrased many ways. Used by the shared-content tests."""

from __future__ import annotations

import random

SYSTEM = (
    "You are the voice assistant of a smart speaker. Classify the user's request into exactly one intent "
    "from this list: weather, music, restaurant, movies, rate_book, playlist, search. Answer with the intent "
    "name only, in lower case, without punctuation or explanation."
)

SLOTS = {
    "city": ["Montana", "Lisbon", "Oslo", "Denver", "Kyoto", "Nairobi", "Perth", "Quebec", "Austin", "Bergen",
             "Utrecht", "Lyon", "Cusco", "Hobart", "Tampa", "Leeds", "Malaga", "Tulsa", "Porto", "Reno"],
    "when": ["tomorrow", "at dinnertime", "this weekend", "on Friday", "tonight", "next week", "in the morning",
             "around noon", "on Sunday afternoon", "the day after tomorrow"],
    "artist": ["Nina Simone", "Daft Punk", "Miles Davis", "Adele", "Bonobo", "Radiohead", "Fela Kuti",
               "Joni Mitchell", "Khruangbin", "Bach"],
    "genre": ["jazz", "lo-fi", "reggae", "baroque", "synthwave", "bluegrass", "techno", "soul", "ambient"],
    "song": ["Feeling Good", "Windowlicker", "So What", "Hello", "Kerala", "Karma Police", "Zombie",
             "River", "August 10", "Clair de Lune"],
    "service": ["Spotify", "Deezer", "YouTube Music", "Tidal"],
    "n": ["two", "three", "four", "five", "six", "eight"],
    "restaurant": ["Chez Marie", "the Blue Door", "Osteria Nove", "Golden Lotus", "Casa Pepe", "the Oak Room"],
    "cuisine": ["Thai", "Ethiopian", "vegan", "sushi", "Georgian", "Peruvian", "tapas", "ramen"],
    "place": ["the station", "downtown", "the harbour", "my office", "the university", "the old bridge"],
    "cinema": ["the Rex", "Odeon Park", "the Roxy", "Cinema Paradiso", "the drive-in"],
    "movie": ["Arrival", "Paddington 2", "Spirited Away", "Heat", "Amelie", "Dune", "Up"],
    "book": ["Middlemarch", "The Hobbit", "Beloved", "Dune", "Persuasion", "Kindred", "Solaris"],
    "k": ["one", "two", "three", "four", "five"],
    "playlist": ["Sunday chill", "workout", "road trip", "focus", "dinner party", "rainy days"],
    "show": ["The Wire", "Fleabag", "Dark", "Succession", "Bluey", "Severance", "Taskmaster", "Frasier"],
    "game": ["Portal", "Celeste", "Hades", "Tetris", "Myst", "Outer Wilds", "Stardew Valley", "Braid"],
}  # fmt: skip

TEMPLATES = {
    "weather": ["What is the forecast for {city} {when}?", "Will it rain in {city} {when}?",
                "Do I need an umbrella {when}?", "How cold does it get in {city} {when}",
                "Is {city} going to be sunny {when}?", "weather {city} {when}",
                "Should I pack a jacket for {city} {when}?"],
    "music": ["Play {artist} on {service}.", "Put on some {genre}", "I want to hear {song} by {artist}",
              "Can you play something like {artist}?", "{genre} please, not too loud",
              "Shuffle {artist} songs"],
    "restaurant": ["Book a table for {n} at {restaurant} {when}", "Reserve {restaurant} for {n} people {when}",
                   "Find a {cuisine} place near {place} that takes bookings",
                   "Any {cuisine} restaurant with room for {n} {when}?", "Get me dinner at {restaurant} {when}"],
    "movies": ["Find movie schedules.", "What's playing at {cinema} {when}?", "Show times for {movie} {when}",
               "Which cinemas near {place} show {movie}?", "Is {movie} still on at {cinema}?",
               "Two tickets for {movie} {when}"],
    "rate_book": ["Rate {book} {k} out of 5", "Give {book} {k} stars", "I'd give {book} a {k}",
                  "{book} deserves {k} points", "My rating for {book}: {k}"],
    "playlist": ["Add {song} to my {playlist} playlist", "Put this track on {playlist}",
                 "Save {song} by {artist} into {playlist}", "{playlist} needs {song} added",
                 "Include {artist} in the {playlist} list"],
    "search": ["Find the TV series {show}", "Look up the game {game}", "Search for {show} season two",
               "Where can I watch {show}?", "Is {game} on sale anywhere?", "Find the movie {movie} trailer"],
}  # fmt: skip


def intent_rows(n: int = 400, seed: int = 0) -> list[dict]:
    """``n`` chat rows, each a distinct question with its intent; the same system prompt in every row."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    intents = sorted(TEMPLATES)
    for _ in range(100 * n):
        if len(rows) == n:
            break
        intent = rng.choice(intents)
        question = rng.choice(TEMPLATES[intent]).format(**{k: rng.choice(v) for k, v in SLOTS.items()})
        if question.lower() in seen:
            continue
        seen.add(question.lower())
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": intent},
                ]
            }
        )
    assert len(rows) == n, f"only {len(rows)} distinct questions"
    return rows
